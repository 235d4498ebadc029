package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The provider against the operator's real API server is tested in
// deploy/operator (envtest); these are its refusals of bad settings.

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	tok := writeFile(t, "token", "abc\n")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no cluster", Config{Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: tok}, "no RayoCluster named"},
		{"not in a pod", Config{Cluster: "c", Namespace: "ns", TokenFile: tok}, "KUBERNETES_SERVICE_HOST"},
		{"bad URL", Config{Cluster: "c", Namespace: "ns", APIServer: "ftp://x", TokenFile: tok}, "want https://HOST:PORT"},
		{"no token file", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: filepath.Join(t.TempDir(), "none")}, "token file"},
		{"empty token", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: writeFile(t, "empty", " \n")}, "is empty"},
		{"no CA file", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: tok, CAFile: filepath.Join(t.TempDir(), "none")}, "CA file"},
		{"CA without PEM", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: tok, CAFile: writeFile(t, "ca", "junk")}, "no PEM certificate"},
	} {
		_, err := New(ctx, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// An API server's refusal reaches the caller with its message, and the
// token is presented as a bearer token.
func TestAPIServerRefusal(t *testing.T) {
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","message":"rayoclusters.rayo.io \"c\" not found"}`))
	}))
	defer srv.Close()
	_, err := New(context.Background(), Config{Cluster: "c", Namespace: "ns", APIServer: srv.URL, TokenFile: writeFile(t, "token", "s3cret\n")})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), `"c" not found`) {
		t.Errorf("New = %v, want the 404 and its message", err)
	}
	if auth != "Bearer s3cret" {
		t.Errorf("Authorization = %q", auth)
	}
}

// fakeCluster is an API server holding one RayoCluster, "c" in "ns",
// with one worker group, and its pods.
type fakeCluster struct {
	mu       sync.Mutex
	rv       int
	group    map[string]any
	pods     map[string]bool              // name -> exists
	ended    map[string]bool              // name -> its process ended (phase Succeeded)
	labels   map[string]map[string]string // name -> its labels, when not of group small of cluster c (read one by one only)
	patches  int
	conflict bool // refuse the next patch with 409
}

func (f *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	const cluster = "/apis/rayo.io/v1alpha1/namespaces/ns/rayoclusters/c"
	const pods = "/api/v1/namespaces/ns/pods"
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == cluster && r.Method == http.MethodGet:
		reply(200, map[string]any{"metadata": map[string]any{"resourceVersion": strconv.Itoa(f.rv)},
			"spec": map[string]any{"workerGroups": []any{f.group}}})
	case r.URL.Path == cluster && r.Method == http.MethodPatch:
		var patch struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
			Spec struct {
				WorkerGroups []map[string]any `json:"workerGroups"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&patch); err != nil || len(patch.Spec.WorkerGroups) != 1 {
			reply(400, map[string]any{"message": fmt.Sprintf("bad patch: %v", err)})
			return
		}
		if f.conflict || patch.Metadata.ResourceVersion != strconv.Itoa(f.rv) {
			f.conflict = false
			f.rv++ // another writer's change
			reply(409, map[string]any{"message": "the object has been modified"})
			return
		}
		f.group = patch.Spec.WorkerGroups[0]
		f.rv++
		f.patches++
		reply(200, map[string]any{})
	case r.URL.Path == pods && r.Method == http.MethodGet:
		var items []any
		for name, ok := range f.pods {
			if ok {
				items = append(items, map[string]any{"metadata": map[string]any{"name": name,
					"labels": map[string]string{"rayo.io/cluster": "c", "rayo.io/group": "small"}},
					"status": map[string]any{"phase": "Running"}})
			}
		}
		reply(200, map[string]any{"items": items})
	case strings.HasPrefix(r.URL.Path, pods+"/") && r.Method == http.MethodGet:
		name := strings.TrimPrefix(r.URL.Path, pods+"/")
		if !f.pods[name] {
			reply(404, map[string]any{"message": fmt.Sprintf("pods %q not found", name)})
			return
		}
		phase := "Running"
		if f.ended[name] {
			phase = "Succeeded"
		}
		labels, ok := f.labels[name]
		if !ok {
			labels = map[string]string{"rayo.io/cluster": "c", "rayo.io/group": "small"}
		}
		reply(200, map[string]any{"metadata": map[string]any{"name": name, "labels": labels}, "status": map[string]any{"phase": phase}})
	default:
		reply(404, map[string]any{"message": "no route " + r.Method + " " + r.URL.Path})
	}
}

// replicas and workersToDelete of the fake's group.
func (f *fakeCluster) state() (float64, []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.group) // as set by the test, or as patched
	var g struct {
		Replicas        float64 `json:"replicas"`
		WorkersToDelete []any   `json:"workersToDelete"`
	}
	_ = json.Unmarshal(b, &g)
	return g.Replicas, g.WorkersToDelete
}

// Terminate names the pods it removes in workersToDelete and lowers the
// replicas, once per pod, retrying a patch that lost a race; a listed
// pod gone since is left alone; a replica that never got a pod lowers
// the replicas unnamed; a pod never listed is an error. Launch stays
// within the group's maximum.
func TestTerminateAndLaunch(t *testing.T) {
	f := &fakeCluster{rv: 7, pods: map[string]bool{"c-small-a": true, "c-small-b": true},
		group: map[string]any{"name": "small", "cpu": 2, "resources": map[string]float64{"GPU": 1},
			"minReplicas": 1, "maxReplicas": 4, "replicas": 3, "image": "kept:1"}}
	p := serveFake(t, f)
	ctx := context.Background()
	checkSmallGroupListed(t, ctx, p)

	// b's pod goes (deleted by hand) before it is terminated: nothing to do.
	f.mu.Lock()
	f.pods["c-small-b"] = false
	f.conflict = true
	f.mu.Unlock()
	if err := p.Terminate(ctx, []string{"c-small-b"}); err != nil {
		t.Fatalf("terminate a listed pod gone since: %v", err)
	}
	if r, d := f.state(); r != 3 || len(d) != 0 {
		t.Fatalf("replicas %v workersToDelete %v, want 3 and none", r, d)
	}
	// A pod is named, and the replicas lowered (after a lost race).
	if err := p.Terminate(ctx, []string{"c-small-a"}); err != nil {
		t.Fatal(err)
	}
	if r, d := f.state(); r != 2 || len(d) != 1 || d[0] != "c-small-a" {
		t.Fatalf("replicas %v workersToDelete %v, want 2 and [c-small-a]", r, d)
	}
	// Named again (the next round saw it before the operator removed
	// it): nothing more.
	if err := p.Terminate(ctx, []string{"c-small-a"}); err != nil {
		t.Fatal(err)
	}
	if r, d := f.state(); r != 2 || len(d) != 1 {
		t.Fatalf("replicas %v workersToDelete %v after naming a pod twice, want 2 and [c-small-a]", r, d)
	}
	// A replica that never got a pod lowers the replicas, unnamed.
	if err := p.Terminate(ctx, []string{"small-pending-0"}); err != nil {
		t.Fatal(err)
	}
	if r, d := f.state(); r != 1 || len(d) != 1 {
		t.Fatalf("replicas %v workersToDelete %v, want 1 and [c-small-a]", r, d)
	}
	f.mu.Lock()
	image := f.group["image"]
	f.mu.Unlock()
	if image != "kept:1" {
		t.Errorf("the patch lost a field the provider does not know: image %v", image)
	}
	if err := p.Terminate(ctx, []string{"c-small-zzz"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("terminate an instance never listed = %v, want the 404", err)
	}
	f.mu.Lock()
	f.pods["c-small-c"] = true
	f.mu.Unlock()
	if err := p.Terminate(ctx, []string{"c-small-c"}); err == nil || !strings.Contains(err.Error(), "below its minReplicas 1") {
		t.Errorf("terminate below the minimum = %v", err)
	}
	if err := p.Launch(ctx, "small", 3); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.state(); r != 4 {
		t.Errorf("replicas %v after launching 3, want 4", r)
	}
	if err := p.Launch(ctx, "small", 1); err == nil || !strings.Contains(err.Error(), "maxReplicas 4") {
		t.Errorf("launch past the maximum = %v", err)
	}
}

// checkSmallGroupListed checks p's node type, the fake's group small (2
// CPUs, 1 GPU, min 1, max 4), and its instances: the two pods running and
// the third replica pending.
func checkSmallGroupListed(t *testing.T, ctx context.Context, p *Provider) {
	t.Helper()
	if ty := p.NodeTypes(); len(ty) != 1 || ty[0].Name != "small" || ty[0].Resources["CPU"] != 2 || ty[0].Resources["GPU"] != 1 ||
		ty[0].MinWorkers != 1 || ty[0].MaxWorkers != 4 {
		t.Fatalf("node types = %+v", ty)
	}
	list, err := p.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range list {
		ids = append(ids, in.ID+":"+string(in.State))
	}
	slices.Sort(ids)
	if want := []string{"c-small-a:RUNNING", "c-small-b:RUNNING", "small-pending-0:PENDING"}; !slices.Equal(ids, want) {
		t.Fatalf("instances = %v, want %v", ids, want)
	}
}

// A group at its minimum: a running pod may not be removed, a pod that
// ended may (the autoscaler adds its replacement).
func TestTerminateEndedPodAtMinimum(t *testing.T) {
	f := &fakeCluster{rv: 1, pods: map[string]bool{"c-small-up": true, "c-small-done": true}, ended: map[string]bool{"c-small-done": true},
		group: map[string]any{"name": "small", "cpu": 1, "minReplicas": 2, "maxReplicas": 3, "replicas": 2}}
	p := serveFake(t, f)
	ctx := context.Background()
	if err := p.Terminate(ctx, []string{"c-small-up"}); err == nil || !strings.Contains(err.Error(), "below its minReplicas 2") {
		t.Errorf("terminate a running pod at the minimum = %v, want refused", err)
	}
	if err := p.Terminate(ctx, []string{"c-small-done"}); err != nil {
		t.Fatalf("terminate an ended pod at the minimum: %v", err)
	}
	if r, d := f.state(); r != 1 || len(d) != 1 || d[0] != "c-small-done" {
		t.Errorf("replicas %v workersToDelete %v, want 1 and [c-small-done]", r, d)
	}
}

// The operator removes a named pod and clears workersToDelete; a round
// that listed the pod before that names it again: the replicas are not
// lowered twice.
func TestTerminateNamesAPodOnce(t *testing.T) {
	f := &fakeCluster{rv: 1, pods: map[string]bool{"c-small-a": true, "c-small-b": true},
		group: map[string]any{"name": "small", "cpu": 1, "minReplicas": 0, "maxReplicas": 3, "replicas": 2}}
	p := serveFake(t, f)
	ctx := context.Background()
	if _, err := p.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Terminate(ctx, []string{"c-small-a"}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	delete(f.group, "workersToDelete") // the operator, having deleted the pod (still listed here)
	f.rv++
	f.mu.Unlock()
	if err := p.Terminate(ctx, []string{"c-small-a"}); err != nil {
		t.Fatal(err)
	}
	if r, d := f.state(); r != 1 || len(d) != 0 {
		t.Errorf("replicas %v workersToDelete %v, want 1 and none: the pod named once", r, d)
	}
	// Once no longer listed, the name is forgotten.
	f.mu.Lock()
	f.pods["c-small-a"] = false
	f.mu.Unlock()
	if _, err := p.Instances(ctx); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	left := len(p.named)
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d pods still remembered as named after they went", left)
	}
}

// One Terminate of several instances: a pod, a pod already named in
// workersToDelete and a replica without a pod lower the replicas in one
// patch, by the two not yet named. Pods that are not the cluster's
// workers, or of a group the cluster does not have, are refused and
// change nothing.
func TestTerminateSeveralAndRefusals(t *testing.T) {
	f := &fakeCluster{rv: 1, pods: map[string]bool{"c-small-a": true, "c-small-b": true},
		group: map[string]any{"name": "small", "cpu": 1, "minReplicas": 0, "maxReplicas": 4, "replicas": 3, "workersToDelete": []string{"c-small-b"}}}
	p := serveFake(t, f)
	ctx := context.Background()
	if _, err := p.Instances(ctx); err != nil { // lists small-pending-0
		t.Fatal(err)
	}
	f.mu.Lock()
	f.labels = map[string]map[string]string{
		"c-head":    {"rayo.io/cluster": "c", "rayo.io/group": "head"},
		"d-small-a": {"rayo.io/cluster": "d", "rayo.io/group": "small"},
		"c-nolabel": {"rayo.io/cluster": "c"},
		"c-big-a":   {"rayo.io/cluster": "c", "rayo.io/group": "big"},
	}
	for name := range f.labels {
		f.pods[name] = true
	}
	f.mu.Unlock()
	for _, tc := range []struct{ id, want string }{
		{"c-head", "not a worker pod of RayoCluster c"},
		{"d-small-a", "not a worker pod of RayoCluster c"},
		{"c-nolabel", "not a worker pod of RayoCluster c"},
		{"c-big-a", `RayoCluster c has no worker group "big"`},
	} {
		// The refused pod comes last: what came before it is not
		// changed either.
		if err := p.Terminate(ctx, []string{"c-small-a", tc.id}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("terminate %s = %v, want %q", tc.id, err, tc.want)
		}
		if r, d := f.state(); r != 3 || len(d) != 1 {
			t.Fatalf("after terminating %s: replicas %v workersToDelete %v, want 3 and [c-small-b]", tc.id, r, d)
		}
	}
	if err := p.Terminate(ctx, []string{"c-small-a", "c-small-b", "small-pending-0"}); err != nil {
		t.Fatal(err)
	}
	r, d := f.state()
	if r != 1 || !slices.Equal(d, []any{"c-small-b", "c-small-a"}) {
		t.Fatalf("replicas %v workersToDelete %v, want 1 and [c-small-b c-small-a]", r, d)
	}
	if f.patches != 1 {
		t.Errorf("%d patches, want 1", f.patches)
	}
}

// serveFake serves f over HTTP and returns a provider of its cluster "c"
// in namespace "ns", closed with the test.
func serveFake(t *testing.T, f *fakeCluster) *Provider {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, err := New(context.Background(), Config{Cluster: "c", Namespace: "ns", APIServer: srv.URL, TokenFile: writeFile(t, "token", "t")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
