package charttest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// envtestVersion is the Kubernetes release of the envtest binaries (the
// Makefile's ENVTEST_K8S).
const envtestVersion = "v1.37.2"

// envtestAssets is where make envtest-assets puts kube-apiserver and etcd.
func envtestAssets() string {
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

// The chart as Helm's library renders it (with Redis on, so every
// template renders something) is accepted by a real API server
// (envtest's kube-apiserver and etcd): every object is created, with the
// server's own validation and defaulting, and reads back.
func TestChartAppliesToAPIServer(t *testing.T) {
	c, cfg := startAPIServer(t)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}); err != nil {
		t.Fatal(err)
	}
	m := mustRender(t, map[string]any{"redis": map[string]any{"enabled": true},
		"workerGroups": []any{
			map[string]any{"name": "cpu", "replicas": 2, "cpu": 4, "memoryMiB": 8192, "objectStorePercent": 30},
			map[string]any{"name": "gpu", "replicas": 1, "cpu": 8, "memoryMiB": 16384, "objectStorePercent": 40,
				"customResources": map[string]any{"GPU": 1}},
		}})
	kinds := createAll(t, ctx, c, m)
	// Two worker groups and Redis: three Deployments; the head's two
	// Services and Redis's.
	// The token's Secret and the CA's.
	want := map[string]int{"Deployment": 3, "StatefulSet": 1, "Service": 3, "Secret": 2}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("created %v, want %v", kinds, want)
	}
	checkUpgradeKeepsSecrets(t, ctx, c, cfg, m)
}

// startAPIServer starts envtest's kube-apiserver and etcd, stops them when
// the test ends, and returns a client of the server and its config. It
// skips the test when the binaries are not there.
func startAPIServer(t *testing.T) (client.Client, *rest.Config) {
	t.Helper()
	assets := envtestAssets()
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			t.Skipf("envtest: no %s in %s (KUBEBUILDER_ASSETS): run `make envtest-assets` at the repository's root, "+
				"which installs etcd-server and builds kube-apiserver %s once", bin, assets, envtestVersion)
		}
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("envtest stop: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c, cfg
}

// createAll creates every object of m in the namespace ml, reads each
// back, and returns how many of each kind it created.
func createAll(t *testing.T, ctx context.Context, c client.Client, m manifests) map[string]int {
	t.Helper()
	kinds := map[string]int{}
	for _, doc := range m.docs {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		if obj.GetKind() == "" {
			continue
		}
		obj.SetNamespace("ml")
		if err := c.Create(ctx, &obj); err != nil {
			t.Errorf("the API server refuses %s %s: %v", obj.GetKind(), obj.GetName(), err)
			continue
		}
		var back unstructured.Unstructured
		back.SetGroupVersionKind(obj.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Namespace: "ml", Name: obj.GetName()}, &back); err != nil {
			t.Errorf("read back %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		kinds[obj.GetKind()]++
	}
	return kinds
}

// checkUpgradeKeepsSecrets checks that an upgrade (rendered with the API
// server to look the release's objects up in) keeps the CA and the token
// that the install m made: the nodes' certificates and pins stay good.
func checkUpgradeKeepsSecrets(t *testing.T, ctx context.Context, c client.Client, cfg *rest.Config, m manifests) {
	t.Helper()
	up, err := renderWith(t, map[string]any{"redis": map[string]any{"enabled": true}}, cfg)
	if err != nil {
		t.Fatalf("render an upgrade: %v", err)
	}
	for _, name := range []string{"demo-rayo-tls", "demo-rayo-token"} {
		var stored corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: "ml", Name: name}, &stored); err != nil {
			t.Fatal(err)
		}
		got := up.secrets[name]
		if got == nil || len(stored.Data) == 0 || fmt.Sprint(got.Data) != fmt.Sprint(stored.Data) {
			t.Errorf("the upgrade renders %s anew, not as installed", name)
		}
	}
	if !caOf(t, up.secrets["demo-rayo-tls"]).Equal(caOf(t, m.secrets["demo-rayo-tls"])) {
		t.Error("the upgrade's CA is not the install's")
	}
}
