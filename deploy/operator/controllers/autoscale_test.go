package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	k8s "k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/deploy/operator/controllers"
	"github.com/rayo-dev/rayo/deploy/operator/internal/standin"
)

// standinAccounts lets the stand-in kubelet mount the pods' service
// accounts: tokens issued by the API server (TokenRequest) and its CA,
// so that a head pod's kubernetes autoscaler speaks to the API server as
// its service account, with the Role the operator gave it.
func standinAccounts() (*standin.ServiceAccounts, error) {
	cs, err := k8s.NewForConfig(suite.cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	return &standin.ServiceAccounts{APIServer: suite.cfg.Host, CAData: suite.cfg.CAData,
		Token: func(ctx context.Context, ns, sa string) (string, error) {
			tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{}, metav1CreateOptions())
			if err != nil {
				return "", err
			}
			return tr.Status.Token, nil
		}}, nil
}

// groupHistory records every version of a RayoCluster's first worker
// group the API server's watch delivers (its replicas, and the pods
// named in its workersToDelete), and the group's pods made.
type groupHistory struct {
	mu       sync.Mutex
	replicas []int32 // each change, in order
	toDelete map[string]bool
	made     map[string]bool // the group's pods ever made
	ended    string          // why the history is incomplete, if it is
	done     chan struct{}
}

// watchGroup records cluster's first worker group's changes until ctx ends.
func watchGroup(t *testing.T, ctx context.Context, cluster string) *groupHistory {
	t.Helper()
	scheme, err := controllers.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	wc, err := client.NewWithWatch(suite.cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	h := &groupHistory{toDelete: map[string]bool{}, made: map[string]bool{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	// follow reads a watch until ctx ends, from the version a list
	// reads, opening it again (from the last version seen) when the API server ends it or answers that its
	// cache has not caught up yet; a gap it cannot cover ends the history.
	follow := func(what string, list client.ObjectList, opts []client.ListOption, record func(watch.Event)) {
		defer wg.Done()
		// From the version a list reads, so that nothing after it is missed.
		if err := wc.List(ctx, list, opts...); err != nil {
			h.fail(fmt.Sprintf("list %s: %v", what, err))
			return
		}
		rv := list.GetResourceVersion()
		for ctx.Err() == nil {
			w, err := wc.Watch(ctx, list, append(slices.Clone(opts), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})...)
			if err != nil {
				if ctx.Err() == nil {
					h.fail(fmt.Sprintf("watch %s: %v", what, err))
				}
				return
			}
			retry := h.read(ctx, w, &rv, record)
			w.Stop()
			if retry == nil {
				continue // ended by the API server: open it again
			}
			if !apierrors.IsTimeout(retry) {
				h.fail(fmt.Sprintf("watch %s: %v", what, retry))
				return
			}
			select { // the API server's cache is behind: ask again in a while
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	pods := []client.ListOption{client.InNamespace(testNS), client.MatchingLabels{controllers.LabelCluster: cluster, controllers.LabelGroup: "small"}}
	wg.Add(2)
	go follow("pods", &corev1.PodList{}, pods, func(ev watch.Event) {
		if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type == watch.Added {
			h.mu.Lock()
			h.made[p.Name] = true
			h.mu.Unlock()
		}
	})
	go follow("RayoClusters", &v1alpha1.RayoClusterList{}, []client.ListOption{client.InNamespace(testNS)}, func(ev watch.Event) {
		c, isCluster := ev.Object.(*v1alpha1.RayoCluster)
		if !isCluster || c.Name != cluster || ev.Type == watch.Deleted || len(c.Spec.WorkerGroups) == 0 {
			return
		}
		g := c.Spec.WorkerGroups[0]
		h.mu.Lock()
		defer h.mu.Unlock()
		if n := len(h.replicas); n == 0 || h.replicas[n-1] != g.Replicas {
			h.replicas = append(h.replicas, g.Replicas)
		}
		for _, p := range g.WorkersToDelete {
			h.toDelete[p] = true
		}
	})
	go func() {
		wg.Wait()
		close(h.done)
	}()
	return h
}

// read records w's events until it ends (nil), ctx ends (nil), or the
// API server sends an error (returned), keeping in rv the last version.
func (h *groupHistory) read(ctx context.Context, w watch.Interface, rv *string, record func(watch.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			if ev.Type == watch.Error {
				return apierrors.FromObject(ev.Object)
			}
			if o, isObj := ev.Object.(client.Object); isObj {
				*rv = o.GetResourceVersion()
			}
			record(ev)
		}
	}
}

// fail marks the history as incomplete.
func (h *groupHistory) fail(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended == "" {
		h.ended = why
	}
}

// podsMade returns the names of the group's pods made so far.
func (h *groupHistory) podsMade() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for p := range h.made {
		names = append(names, p)
	}
	slices.Sort(names)
	return names
}

// seen returns the replicas recorded so far and the pods named to
// delete. A watch the API server ended fails the test: what it saw is
// not the whole history.
func (h *groupHistory) seen(t *testing.T) ([]int32, []string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended != "" {
		t.Fatalf("the history is incomplete (%s); replicas seen %v", h.ended, h.replicas)
	}
	var names []string
	for p := range h.toDelete {
		names = append(names, p)
	}
	slices.Sort(names)
	return slices.Clone(h.replicas), names
}

// headStatus is what the test reads of `rayo status --json`: every node
// (with why the dead ones died) and the autoscaler's view.
type headStatus struct {
	Nodes []struct {
		NodeID      string            `json:"node_id"`
		State       string            `json:"state"`
		Head        bool              `json:"head"`
		DeathReason string            `json:"death_reason"`
		Labels      map[string]string `json:"labels"`
	} `json:"nodes"`
	Autoscaler *struct {
		Provider           string  `json:"provider"`
		IdleTimeoutSeconds float64 `json:"idle_timeout_seconds"`
		NodeTypes          []struct {
			Name      string             `json:"name"`
			Resources map[string]float64 `json:"resources"`
			Min       int                `json:"min_workers"`
			Max       int                `json:"max_workers"`
		} `json:"node_types"`
		LastError string `json:"last_error"`
	} `json:"autoscaler"`
}

// readHeadStatus runs `rayo status --json` in the cluster's head pod (as
// kubectl exec would: the cluster's links are TLS, with the credentials
// in the pod).
func readHeadStatus(t *testing.T, ctx context.Context, cluster string) (*headStatus, error) {
	t.Helper()
	out, err := suite.kubelet.Exec(ctx, controllers.HeadName(cluster), "rayo", "status", "--json")
	if err != nil {
		return nil, err
	}
	var st headStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("rayo status: %w: %s", err, out)
	}
	return &st, nil
}

// Issue 16's Kubernetes scaling test. A RayoCluster with autoscaling on:
// a 1-CPU head, and a worker group of 1-CPU nodes, min 1 max 3, idle
// timeout 5 s. The head runs `rayo start --head --autoscaler kubernetes`
// as the operator configures it, speaking to the API server with its
// service account's token. A RayoJob's driver runs four 1-CPU tasks that must all
// run at once (a barrier), so the work needs three workers: the head's
// autoscaler raises the group's replicas to 3, the operator makes the
// pods, the stand-in kubelet runs them, and the work completes on four
// nodes. Idle past the timeout, the autoscaler drains two workers and
// names exactly their pods in workersToDelete: replicas go back to 1,
// the two nodes leave the cluster as drained, and no pod is made but
// the three.
func TestAutoscalingFollowsWork(t *testing.T) {
	needEnvtest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	driver, err := buildProgram("./cmd/rayo/testdata/autoscale", "autoscale")
	if err != nil {
		t.Fatal(err)
	}
	const name = "auto"
	h := watchGroup(t, ctx, name)
	defer func() { cancel(); <-h.done }()
	c := newCluster(name, 1, 3)
	c.Spec.Autoscaling = true
	c.Spec.IdleTimeoutSeconds = 5
	c.Spec.WorkerGroups[0].MinReplicas = 1
	created := time.Now()
	if err := suite.client.Create(ctx, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	defer deleteCluster(t, context.Background(), name)
	waitReady(t, ctx, name, 2)
	// The floor, in the same run: the operator and the stand-in bringing
	// a cluster's first two pods up, with no autoscaler in the way.
	floor := time.Since(created)

	waitAutoscalerShowsGroup(t, ctx, name)
	job, outFile, start := createGrowJob(t, ctx, name, driver)
	defer func() { _ = suite.client.Delete(context.Background(), job) }()
	peak := checkGrowJob(t, ctx, h, name, outFile, start, floor)

	// Idle: back to one worker, the others drained and named for deletion.
	left := waitBackToOneWorker(t, ctx, name)
	removed := checkScaleDown(t, h, peak, left)
	checkRemovedDrained(t, ctx, name, left[0], removed)
}

// waitAutoscalerShowsGroup waits until the head's autoscaler runs with
// the kubernetes provider, its node type the worker group, its idle
// timeout the cluster's.
func waitAutoscalerShowsGroup(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	waitFor(t, time.Minute, "the head's autoscaler showing the worker group", func() (bool, error) {
		st, err := readHeadStatus(t, ctx, name)
		if err != nil || st.Autoscaler == nil {
			return false, err
		}
		a := st.Autoscaler
		if a.Provider != "kubernetes" || len(a.NodeTypes) != 1 || a.IdleTimeoutSeconds != 5 {
			return false, fmt.Errorf("autoscaler status %+v", a)
		}
		nt := a.NodeTypes[0]
		if nt.Name != "small" || nt.Resources["CPU"] != 1 || nt.Min != 1 || nt.Max != 3 {
			return false, fmt.Errorf("node type %+v, want small, CPU 1, min 1, max 3", nt)
		}
		return true, nil
	})
}

// createGrowJob creates the work, a RayoJob on the cluster: four 1-CPU
// tasks at once on a 1-CPU head and 1-CPU workers. Its driver runs on the
// head, and writes what it saw to outFile (the stand-in runs it on this
// machine). start is when the job was created.
func createGrowJob(t *testing.T, ctx context.Context, name, driver string) (job *v1alpha1.RayoJob, outFile string, start time.Time) {
	t.Helper()
	outFile = filepath.Join(t.TempDir(), "out")
	job = &v1alpha1.RayoJob{ObjectMeta: metav1.ObjectMeta{Name: "grow", Namespace: testNS},
		Spec: v1alpha1.RayoJobSpec{ClusterRef: name,
			Entrypoint: fmt.Sprintf("%s grow %s 4 >%s 2>&1", driver, t.TempDir(), outFile)}}
	start = time.Now()
	if err := suite.client.Create(ctx, job); err != nil {
		t.Fatalf("create the job: %v", err)
	}
	return job, outFile, start
}

// checkGrowJob waits for the grow job, checks that it succeeded on four
// nodes and that the replicas went up to 3, and returns the group's pods
// at that peak.
func checkGrowJob(t *testing.T, ctx context.Context, h *groupHistory, name, outFile string, start time.Time, floor time.Duration) []corev1.Pod {
	t.Helper()
	j := waitJob(t, ctx, "grow")
	workDone := time.Since(start)
	out, _ := os.ReadFile(outFile)
	if j.Status.JobStatus != v1alpha1.JobSucceeded {
		dumpState(t)
		t.Fatalf("job status %+v, want SUCCEEDED; its driver said:\n%s", j.Status, out)
	}
	kv := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(\w+)=(.*)$`).FindAllStringSubmatch(string(out), -1) {
		kv[m[1]] = m[2]
	}
	if kv["nodes"] != "4" {
		t.Fatalf("four tasks at once ran on %q node(s), want 4 (the head and 3 workers):\n%s", kv["nodes"], out)
	}
	running, _ := strconv.Atoi(kv["all_running_ms"])
	t.Logf("work needing 3 workers: all 4 tasks running %d ms after the driver submitted them (2 pods launched, run and joined), %.2f times the %d ms the cluster's first 2 pods took to be ready; the job SUCCEEDED %v after it was created",
		running, float64(running)/float64(floor.Milliseconds()), floor.Milliseconds(), workDone.Round(time.Millisecond))
	peak, err := clusterPods(ctx, name, "small")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := h.seen(t); len(got) == 0 || slices.Max(got) != 3 {
		t.Fatalf("replicas went %v, want up to 3", got)
	}
	return peak
}

// waitBackToOneWorker waits until the worker group is back to 1 replica
// and 1 pod, and returns the names of the group's pods left.
func waitBackToOneWorker(t *testing.T, ctx context.Context, name string) []string {
	t.Helper()
	idleFrom := time.Now()
	var left []string
	waitFor(t, 3*time.Minute, "the worker group back to 1 replica and 1 pod", func() (bool, error) {
		got, err := getCluster(ctx, name)
		if err != nil {
			return false, err
		}
		pods, err := clusterPods(ctx, name, "small")
		if err != nil {
			return false, err
		}
		left = left[:0]
		for _, p := range pods {
			left = append(left, p.Name)
		}
		return got.Spec.WorkerGroups[0].Replicas == 1 && len(pods) == 1 && got.Status.ReadyNodes == 2, nil
	})
	t.Logf("back to 1 worker %v after the work ended (idle timeout 5s)", time.Since(idleFrom).Round(time.Millisecond))
	return left
}

// checkScaleDown checks the group's history: replicas from 1 up to 3 and
// back to 1, workersToDelete naming exactly the removed pods, and no pod
// made but the three at the peak. It returns the removed pods' names.
func checkScaleDown(t *testing.T, h *groupHistory, peak []corev1.Pod, left []string) []string {
	t.Helper()
	replicas, named := h.seen(t)
	made := h.podsMade()
	t.Logf("replicas over time: %v; workersToDelete named %v; worker pods made %v", replicas, named, made)
	if replicas[0] != 1 || replicas[len(replicas)-1] != 1 {
		t.Errorf("replicas went %v, want from 1 back to 1", replicas)
	}
	top := slices.Index(replicas, 3)
	for i := 1; i < len(replicas); i++ {
		if (i <= top && replicas[i] < replicas[i-1]) || (i > top && replicas[i] > replicas[i-1]) {
			t.Errorf("replicas went %v, want up to 3 then down to 1", replicas)
			break
		}
	}
	var peakNames []string
	for _, p := range peak {
		peakNames = append(peakNames, p.Name)
	}
	if len(peak) != 3 || len(left) != 1 || !slices.Contains(peakNames, left[0]) {
		t.Fatalf("worker pods at the peak %v, left %v: want 3, one of which stays", peakNames, left)
	}
	var removed []string
	for _, p := range peakNames {
		if p != left[0] {
			removed = append(removed, p)
		}
	}
	slices.Sort(removed)
	if !slices.Equal(named, removed) {
		t.Errorf("workersToDelete named %v, want the removed pods %v", named, removed)
	}
	// No pod was made but the three: a drained node's pod, ended, was not
	// replaced before the autoscaler lowered the replicas.
	slices.Sort(peakNames)
	if !slices.Equal(made, peakNames) {
		t.Errorf("worker pods made %v, want only the three at the peak %v", made, peakNames)
	}
	return removed
}

// checkRemovedDrained checks that the removed workers' nodes were drained
// before their pods went: alive are only the head and the pod left, and
// the autoscaler reports no error.
func checkRemovedDrained(t *testing.T, ctx context.Context, name, left string, removed []string) {
	t.Helper()
	st, err := readHeadStatus(t, ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, n := range st.Nodes {
		inst := n.Labels["rayo.io/instance"]
		switch {
		case strings.EqualFold(n.State, "ALIVE"):
			alive++
			if !n.Head && inst != left {
				t.Errorf("alive node %s is of pod %q, want the head or %s", n.NodeID, inst, left)
			}
		case slices.Contains(removed, inst) && !strings.Contains(n.DeathReason, "drained"):
			t.Errorf("removed pod %s's node died %q, want drained", inst, n.DeathReason)
		}
	}
	if alive != 2 {
		t.Errorf("%d alive nodes, want the head and one worker", alive)
	}
	if st.Autoscaler == nil || st.Autoscaler.LastError != "" {
		t.Errorf("autoscaler status %+v, want no error", st.Autoscaler)
	}
}

// In an autoscaled cluster, a worker whose node leaves on its own (here
// drained by hand with rayo drain, its pod Succeeded) is not replaced by
// the operator behind the autoscaler's back: the pod stays counted until
// the head's autoscaler names it in workersToDelete, then goes, and the
// autoscaler adds a new worker for the group's minReplicas. The group
// edited, the running head's autoscaler keeps its new minimum.
func TestAutoscaledWorkerThatLeftIsReplacedByTheAutoscaler(t *testing.T) {
	needEnvtest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const name = "left"
	h := watchGroup(t, ctx, name)
	defer func() { cancel(); <-h.done }()
	c := newCluster(name, 1, 2)
	c.Spec.Autoscaling = true
	c.Spec.WorkerGroups[0].MinReplicas = 1
	if err := suite.client.Create(ctx, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	defer deleteCluster(t, context.Background(), name)
	waitReady(t, ctx, name, 2)
	pods, err := clusterPods(ctx, name, "small")
	if err != nil || len(pods) != 1 {
		t.Fatalf("worker pods %d (%v), want 1", len(pods), err)
	}
	first := pods[0].Name
	var nodeID string
	waitFor(t, time.Minute, "the worker's node in rayo status", func() (bool, error) {
		st, err := readHeadStatus(t, ctx, name)
		if err != nil {
			return false, err
		}
		for _, n := range st.Nodes {
			if n.Labels["rayo.io/instance"] == first && strings.EqualFold(n.State, "ALIVE") {
				nodeID = n.NodeID
			}
		}
		return nodeID != "", nil
	})
	if out, err := suite.kubelet.Exec(ctx, controllers.HeadName(name), "rayo", "drain", nodeID); err != nil {
		t.Fatalf("rayo drain in the head pod: %v\n%s", err, out)
	}
	var second string
	waitFor(t, 2*time.Minute, "a new worker ready in place of the drained one", func() (bool, error) {
		pods, err := clusterPods(ctx, name, "small")
		if err != nil || len(pods) != 1 || pods[0].Name == first || !podIsReady(&pods[0]) {
			return false, err
		}
		second = pods[0].Name
		got, err := getCluster(ctx, name)
		return err == nil && got.Spec.WorkerGroups[0].Replicas == 1, err
	})
	replicas, named := h.seen(t)
	made := h.podsMade()
	t.Logf("replicas over time %v; workersToDelete named %v; worker pods made %v", replicas, named, made)
	if !slices.Equal(named, []string{first}) {
		t.Errorf("workersToDelete named %v, want the drained pod %s", named, first)
	}
	if !slices.Equal(replicas, []int32{1, 0, 1}) {
		t.Errorf("replicas went %v, want 1, 0 (the autoscaler naming the pod that left), 1 (its group's minimum)", replicas)
	}
	if want := []string{first, second}; len(made) != 2 || !slices.Contains(made, first) || !slices.Contains(made, second) {
		t.Errorf("worker pods made %v, want %v only", made, want)
	}

	editGroupAndWaitForMinimum(t, ctx, name)
}

// editGroupAndWaitForMinimum edits the group (min 2, max 3) and waits
// until the running head's autoscaler takes it up, keeping the new minimum.
func editGroupAndWaitForMinimum(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	waitFor(t, time.Minute, "the group edited", func() (bool, error) {
		got, err := getCluster(ctx, name)
		if err != nil {
			return false, err
		}
		got.Spec.WorkerGroups[0].MinReplicas, got.Spec.WorkerGroups[0].MaxReplicas = 2, 3
		if err := suite.client.Update(ctx, got); err != nil {
			return false, client.IgnoreNotFound(err) // a conflict: read again
		}
		return true, nil
	})
	waitFor(t, 2*time.Minute, "the head's autoscaler keeping the new minimum of 2", func() (bool, error) {
		st, err := readHeadStatus(t, ctx, name)
		if err != nil || st.Autoscaler == nil || len(st.Autoscaler.NodeTypes) != 1 {
			return false, err
		}
		nt := st.Autoscaler.NodeTypes[0]
		got, err := getCluster(ctx, name)
		if err != nil {
			return false, err
		}
		return nt.Min == 2 && nt.Max == 3 && got.Spec.WorkerGroups[0].Replicas == 2 && got.Status.ReadyNodes == 3, nil
	})
}
