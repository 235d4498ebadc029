package controllers_test

// The operator's tests run against a real API server and etcd
// (controller-runtime's envtest, with kube-apiserver built by `make
// envtest-assets`), the operator's real controllers, and real rayo
// processes. No kubelet, scheduler, DNS or container runtime runs there:
// internal/standin plays them, running each pod as a local `rayo start`
// process (see its package comment for exactly what it stands in).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/deploy/operator/controllers"
	"github.com/rayo-dev/rayo/deploy/operator/internal/standin"
)

// envtestVersion is the Kubernetes release the assets are built from
// (the Makefile's ENVTEST_K8S).
const envtestVersion = "v1.37.2"

// testNS is the namespace the tests' clusters live in.
const testNS = "rayo-test"

var suite struct {
	skip    string // why the suite cannot run, if it cannot
	cfg     *rest.Config
	client  client.Client
	kubelet *standin.Kubelet
	tmp     string // the suite's files: binaries, pods' folders
	rayo    string // the rayo binary the pods run
	root    string // the repository's root
}

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

// assetsDir is where make envtest-assets puts kube-apiserver and etcd.
func assetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "rayo", "envtest", envtestVersion)
}

func runSuite(m *testing.M) int {
	assets := assetsDir()
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			suite.skip = fmt.Sprintf("envtest: no %s in %s (KUBEBUILDER_ASSETS): run `make envtest-assets` at the repository's root, "+
				"which installs etcd-server and builds kube-apiserver %s once, then `make test-operator`", bin, assets, envtestVersion)
			return m.Run()
		}
	}
	var err error
	if suite.root, err = filepath.Abs("../../.."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if suite.tmp, err = os.MkdirTemp("", "rayo-operator-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(suite.tmp)
	if suite.rayo, err = buildProgram("./cmd/rayo", "rayo"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}
	if suite.cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "envtest: start the API server:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "envtest: stop:", err)
		}
	}()
	code, err := runWithOperator(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}

// runWithOperator starts the operator and the stand-in kubelet against
// the API server, runs the tests, and stops both.
func runWithOperator(m *testing.M) (int, error) {
	scheme, err := controllers.NewScheme()
	if err != nil {
		return 0, err
	}
	if suite.client, err = client.New(suite.cfg, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := suite.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}); err != nil {
		return 0, fmt.Errorf("namespace: %w", err)
	}
	accounts, err := standinAccounts()
	if err != nil {
		return 0, err
	}
	suite.kubelet = &standin.Kubelet{Client: suite.client, Namespace: testNS, Binary: suite.rayo, Dir: filepath.Join(suite.tmp, "pods"),
		Accounts: accounts}
	suite.kubelet.Start(ctx)
	defer suite.kubelet.Stop()

	mgr, err := ctrl.NewManager(suite.cfg, ctrl.Options{Scheme: scheme,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		return 0, fmt.Errorf("manager: %w", err)
	}
	// No cluster DNS: the operator reaches a head's API server where the
	// stand-in runs it.
	dashboard := func(ctx context.Context, c *v1alpha1.RayoCluster) (string, error) {
		addr, err := suite.kubelet.ResolveService(ctx, controllers.HeadName(c.Name), controllers.PortDashboard)
		return "http://" + addr, err
	}
	if err := controllers.Setup(mgr, dashboard); err != nil {
		return 0, err
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-mgrDone; err != nil {
		return code, fmt.Errorf("manager: %w", err)
	}
	return code, nil
}

// buildProgram builds the repository's package pkg into the suite's
// folder.
func buildProgram(pkg, name string) (string, error) {
	out := filepath.Join(suite.tmp, "bin", name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = suite.root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// needEnvtest skips a test when the envtest binaries are missing, saying
// which make target builds them.
func needEnvtest(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			dumpState(t)
			t.Fatalf("after %v: %s has not happened (last error: %v)", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond) // the poll's period, not a synchronisation
	}
}

// dumpState prints what the test saw: the clusters' status, every pod's
// phase and readiness, and the end of each pod's process log.
func dumpState(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cs v1alpha1.RayoClusterList
	if err := suite.client.List(ctx, &cs, client.InNamespace(testNS)); err == nil {
		for _, c := range cs.Items {
			t.Logf("RayoCluster %s: status %+v", c.Name, c.Status)
		}
	}
	var pods corev1.PodList
	if err := suite.client.List(ctx, &pods, client.InNamespace(testNS)); err != nil {
		t.Logf("list pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		t.Logf("pod %s: phase %s ready %v node %q deleting %v", p.Name, p.Status.Phase, podIsReady(&p), p.Spec.NodeName, !p.DeletionTimestamp.IsZero())
		if log, ok := suite.kubelet.Log(p.Name); ok {
			t.Logf("pod %s's log:\n%s", p.Name, log)
		} else {
			t.Logf("pod %s: no process in the stand-in kubelet", p.Name)
		}
	}
}

// podIsReady reports whether a pod's Ready condition is true.
func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// newCluster is a small cluster: a 1-CPU head and a worker group
// "small" of 1-CPU nodes.
func newCluster(name string, replicas, maxReplicas int32) *v1alpha1.RayoCluster {
	return &v1alpha1.RayoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: v1alpha1.RayoClusterSpec{
			Head: v1alpha1.NodeSpec{CPU: 1, MemoryMiB: 512, ObjectStorePercent: 20},
			WorkerGroups: []v1alpha1.WorkerGroup{{Name: "small", NodeSpec: v1alpha1.NodeSpec{CPU: 1, MemoryMiB: 256, ObjectStorePercent: 20},
				MinReplicas: 0, MaxReplicas: maxReplicas, Replicas: replicas}},
		},
	}
}

// getCluster reads a cluster.
func getCluster(ctx context.Context, name string) (*v1alpha1.RayoCluster, error) {
	var c v1alpha1.RayoCluster
	err := suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: name}, &c)
	return &c, err
}

// waitReady waits for the cluster's status to say Ready with nodes ready.
func waitReady(t *testing.T, ctx context.Context, name string, nodes int32) *v1alpha1.RayoCluster {
	t.Helper()
	var c *v1alpha1.RayoCluster
	waitFor(t, 3*time.Minute, fmt.Sprintf("RayoCluster %s Ready with %d nodes", name, nodes), func() (bool, error) {
		var err error
		c, err = getCluster(ctx, name)
		if err != nil {
			return false, err
		}
		return c.Status.State == v1alpha1.ClusterReady && c.Status.ReadyNodes == nodes && c.Status.DesiredNodes == nodes, nil
	})
	return c
}

// clusterPods lists a cluster's pods in a group ("" for all).
func clusterPods(ctx context.Context, cluster, group string) ([]corev1.Pod, error) {
	labels := client.MatchingLabels{controllers.LabelCluster: cluster}
	if group != "" {
		labels[controllers.LabelGroup] = group
	}
	var list corev1.PodList
	err := suite.client.List(ctx, &list, client.InNamespace(testNS), labels)
	return list.Items, err
}

// token reads a cluster's token from its Secret.
func token(t *testing.T, ctx context.Context, cluster string) string {
	t.Helper()
	var s corev1.Secret
	if err := suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: controllers.TokenSecretName(cluster)}, &s); err != nil {
		t.Fatalf("token secret: %v", err)
	}
	return string(s.Data["token"])
}

// statusNode is a node as `rayo status --json` prints it.
type statusNode struct {
	State       string            `json:"state"`
	Head        bool              `json:"head"`
	Labels      map[string]string `json:"labels"`
	DeathReason string            `json:"death_reason"`
}

// rayoStatus runs `rayo status --json` in the cluster's head pod (as
// `kubectl exec` would: the head's links are TLS with the cluster's CA,
// whose credentials are in the pod) and returns the alive nodes.
func rayoStatus(t *testing.T, ctx context.Context, cluster string) ([]statusNode, error) {
	t.Helper()
	all, err := rayoStatusAll(ctx, cluster)
	var alive []statusNode
	for _, n := range all {
		if strings.EqualFold(n.State, "ALIVE") {
			alive = append(alive, n)
		}
	}
	return alive, err
}

// rayoStatusAll is every node `rayo status --json` lists in the cluster's
// head pod, the dead too.
func rayoStatusAll(ctx context.Context, cluster string) ([]statusNode, error) {
	out, err := suite.kubelet.Exec(ctx, controllers.HeadName(cluster), "rayo", "status", "--json")
	if err != nil {
		return nil, err
	}
	var st struct {
		Nodes []statusNode `json:"nodes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("rayo status: %w: %s", err, out)
	}
	return st.Nodes, nil
}

// deleteCluster deletes a cluster and waits until it and its pods (and
// their processes) are gone.
func deleteCluster(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	c := &v1alpha1.RayoCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}}
	if err := client.IgnoreNotFound(suite.client.Delete(ctx, c)); err != nil {
		t.Fatalf("delete RayoCluster %s: %v", name, err)
	}
	waitGone(t, ctx, name)
}

// waitGone waits until a cluster, its pods and their processes are gone.
func waitGone(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var pods []corev1.Pod
	waitFor(t, 2*time.Minute, "RayoCluster "+name+" and its pods gone", func() (bool, error) {
		if _, err := getCluster(ctx, name); err == nil || client.IgnoreNotFound(err) != nil {
			return false, err
		}
		var err error
		pods, err = clusterPods(ctx, name, "")
		return err == nil && len(pods) == 0, err
	})
}

// metav1CreateOptions are empty create options.
func metav1CreateOptions() metav1.CreateOptions { return metav1.CreateOptions{} }

// objKey is a key in the test namespace.
func objKey(name string) client.ObjectKey { return client.ObjectKey{Namespace: testNS, Name: name} }
