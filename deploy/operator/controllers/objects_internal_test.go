package controllers

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata")

// The pods nodePod builds for a head (autoscaled or not) and for workers,
// field by field, are those in testdata/nodepod.golden; go test -run
// TestNodePodGolden -rewrite writes the file anew. A resource that cannot
// be encoded is refused.
func TestNodePodGolden(t *testing.T) {
	c := &v1alpha1.RayoCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "ml", UID: "uid-1"}}
	auto := c.DeepCopy()
	auto.Spec.Autoscaling = true
	auto.Spec.IdleTimeoutSeconds = 90
	autoNoIdle := auto.DeepCopy()
	autoNoIdle.Spec.IdleTimeoutSeconds = 0
	var got bytes.Buffer
	for _, tc := range []struct {
		name, group, pod string
		c                *v1alpha1.RayoCluster
		spec             v1alpha1.NodeSpec
	}{
		{"head", HeadGroup, "demo-head", c, v1alpha1.NodeSpec{CPU: 2, MemoryMiB: 1024}},
		{"autoscaled head", HeadGroup, "demo-head", auto, v1alpha1.NodeSpec{Image: "rayo:1.2", CPU: 1, MemoryMiB: 512, ObjectStorePercent: 50}},
		{"autoscaled head, default idle timeout", HeadGroup, "demo-head", autoNoIdle, v1alpha1.NodeSpec{CPU: 1, MemoryMiB: 512}},
		{"worker", "small", "demo-small-x1", c, v1alpha1.NodeSpec{CPU: 4, MemoryMiB: 2048, Resources: map[string]float64{"GPU": 1, "TPU": 0.5}}},
		{"worker of an autoscaled cluster", "big", "demo-big-x2", auto, v1alpha1.NodeSpec{Image: "rayo:1.2", CPU: 8, MemoryMiB: 4096}},
	} {
		p, err := nodePod(tc.c, tc.group, tc.pod, tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&got, "== %s\n%s\n", tc.name, b)
	}
	path := filepath.Join("testdata", "nodepod.golden")
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestNodePodGolden -rewrite writes it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		i := 0
		for i < min(len(gl), len(wl)) && gl[i] == wl[i] {
			i++
		}
		t.Fatalf("the pods differ from %s from line %d: got %q, want %q", path, i+1,
			gl[i:min(i+3, len(gl))], wl[i:min(i+3, len(wl))])
	}

	bad := v1alpha1.NodeSpec{CPU: 1, MemoryMiB: 512, Resources: map[string]float64{"GPU": math.NaN()}}
	if _, err := nodePod(c, "small", "demo-small-x3", bad); err == nil || !strings.Contains(err.Error(), "resources") {
		t.Errorf("nodePod with a NaN resource = %v, want a resources error", err)
	}
}
