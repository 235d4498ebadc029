package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPIServer answers the kubernetes provider's first reading of its
// RayoCluster with status and body.
func fakeAPIServer(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// rayo start --head --autoscaler kubernetes refuses, with a clear error,
// to start without what the provider needs, or when the API server
// refuses it, or with a RayoCluster it cannot scale.
func TestStartRefusesBadKubernetesAutoscaler(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	forbidden := fakeAPIServer(t, http.StatusForbidden,
		`{"kind":"Status","status":"Failure","message":"rayoclusters.rayo.io \"demo\" is forbidden: User \"system:serviceaccount:ns:x\" cannot get resource","code":403}`)
	noGroups := fakeAPIServer(t, http.StatusOK, `{"metadata":{"resourceVersion":"1"},"spec":{"workerGroups":[]}}`)
	k8s := func(args ...string) []string {
		return append([]string{"--head", "--autoscaler", "kubernetes"}, args...)
	}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, k8s(), "name the RayoCluster to scale with --kubernetes-cluster"},
		{[]string{"KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT="}, k8s("--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns"),
			"KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset"},
		{nil, k8s("--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns", "--kubernetes-api-server", "ftp://x"), "want https://HOST:PORT"},
		{nil, k8s("--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns", "--kubernetes-api-server", forbidden,
			"--kubernetes-token-file", filepath.Join(dir, "none")), "token file"},
		{nil, k8s("--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns", "--kubernetes-api-server", "https://127.0.0.1:1",
			"--kubernetes-token-file", tok, "--kubernetes-ca-file", filepath.Join(dir, "none")), "CA file"},
		{nil, k8s("--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns", "--kubernetes-api-server", forbidden,
			"--kubernetes-token-file", tok), `answered 403: rayoclusters.rayo.io "demo" is forbidden`},
		// The environment twins, as the operator gives the head pod.
		{[]string{"RAYO_KUBERNETES_CLUSTER=demo", "RAYO_KUBERNETES_NAMESPACE=ns", "RAYO_KUBERNETES_API_SERVER=" + forbidden, "RAYO_KUBERNETES_TOKEN_FILE=" + tok},
			k8s(), "answered 403"},
		{nil, k8s("--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns", "--kubernetes-api-server", noGroups,
			"--kubernetes-token-file", tok), "RayoCluster demo's worker groups: autoscaler: bad configuration: no node types"},
		{nil, k8s("--kubernetes-cluster", "demo", "--autoscaler-node-types", `[{"name":"x","resources":{"CPU":1}}]`), "--autoscaler-node-types is for --autoscaler local"},
		{nil, []string{"--head", "--kubernetes-cluster", "demo"}, "--kubernetes-cluster needs --autoscaler kubernetes"},
		{nil, []string{"--head", "--autoscaler", "local", "--kubernetes-namespace", "ns"}, "--kubernetes-namespace needs --autoscaler kubernetes"},
	} {
		cmd := e.cmd(append([]string{"start", "--block", "--port", fmt.Sprint(freePort(t))}, c.args...)...)
		cmd.Env = append(cmd.Env, c.env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("rayo start %v (env %v): %v\n%s\nwant an error with %q", c.args, c.env, err, out, c.want)
		}
	}
}

// scalingAPIServer is an API server holding the RayoCluster "demo" in
// "ns" with one worker group "w" of 1-CPU nodes (min 0, max 2) and no
// pods: it records the replicas the provider patches in, and the bearer
// tokens it is shown.
type scalingAPIServer struct {
	mu       sync.Mutex
	rv       int
	replicas int
	auth     map[string]bool
}

func (f *scalingAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth[r.Header.Get("Authorization")] = true
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/apis/rayo.io/v1alpha1/namespaces/ns/rayoclusters/demo" && r.Method == http.MethodGet:
		fmt.Fprintf(w, `{"metadata":{"resourceVersion":"%d"},"spec":{"workerGroups":[{"name":"w","cpu":1,"minReplicas":0,"maxReplicas":2,"replicas":%d}]}}`, f.rv, f.replicas)
	case r.URL.Path == "/apis/rayo.io/v1alpha1/namespaces/ns/rayoclusters/demo" && r.Method == http.MethodPatch:
		var patch struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
			Spec struct {
				WorkerGroups []struct {
					Name     string `json:"name"`
					Replicas int    `json:"replicas"`
				} `json:"workerGroups"`
			} `json:"spec"`
		}
		if err := json.NewDecoder(r.Body).Decode(&patch); err != nil || len(patch.Spec.WorkerGroups) != 1 || patch.Spec.WorkerGroups[0].Name != "w" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"message":"bad patch: %v"}`, err)
			return
		}
		if patch.Metadata.ResourceVersion != fmt.Sprint(f.rv) {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"message":"the object has been modified"}`)
			return
		}
		f.rv++
		f.replicas = patch.Spec.WorkerGroups[0].Replicas
		fmt.Fprint(w, `{}`)
	case r.URL.Path == "/api/v1/namespaces/ns/pods" && r.Method == http.MethodGet:
		fmt.Fprint(w, `{"items":[]}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"message":"no route %s %s"}`, r.Method, r.URL.Path)
	}
}

// A head with --autoscaler kubernetes, outside a pod (the API server,
// token and namespace given by flags), takes its node types from the
// RayoCluster's worker groups, shows them in rayo status, and answers
// demand its node cannot hold by raising the group's replicas, showing
// the API server its token. (The whole loop, with the operator making
// the pods, is deploy/operator's TestAutoscalingFollowsWork, on envtest.)
func TestKubernetesAutoscalerRaisesReplicas(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	driver := filepath.Join(t.TempDir(), "autoscale")
	if out, err := exec.Command("go", "build", "-o", driver, "./testdata/autoscale").CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	api := &scalingAPIServer{rv: 1, auth: map[string]bool{}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "1", "--autoscaler", "kubernetes",
		"--kubernetes-cluster", "demo", "--kubernetes-namespace", "ns", "--kubernetes-api-server", srv.URL,
		"--kubernetes-token-file", tok, "--autoscaler-interval", "200ms")
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	st := e.autoscalerStatus(t)
	if st == nil || st.Provider != "kubernetes" || st.MaxWorkers != 2 || len(st.NodeTypes) != 1 ||
		st.NodeTypes[0].Name != "w" || st.NodeTypes[0].Resources["CPU"] != 1 || st.NodeTypes[0].Max != 2 {
		t.Fatalf("autoscaler status: %+v, want the kubernetes provider with node type w (CPU 1, max 2)", st)
	}

	// Room for two 1-CPU bundles on a 1-CPU head: one more node.
	c := exec.Command(driver, "request", "2")
	c.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS="+fmt.Sprintf("127.0.0.1:%d", port), "RAYO_TOKEN=")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("driver: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		api.mu.Lock()
		replicas, tokens, shown := api.replicas, len(api.auth), api.auth["Bearer s3cret"]
		api.mu.Unlock()
		if replicas == 1 {
			if tokens != 1 || !shown {
				t.Errorf("the API server was shown %d tokens (the token file's: %v), want only the token file's", tokens, shown)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas %d after 30 s, want 1; autoscaler status %+v", replicas, e.autoscalerStatus(t))
		}
		time.Sleep(100 * time.Millisecond) // polling the head's next rounds
	}
}
