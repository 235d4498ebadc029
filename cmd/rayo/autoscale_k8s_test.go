package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
