package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/deploy/operator/controllers"
	"github.com/rayo-dev/rayo/internal/autoscaler"
)

// A RayoCluster with two workers comes up: its pods are made and run,
// its status counts three ready nodes, `rayo status` against its head
// shows three alive nodes carrying the providers' labels; deleting it
// removes its pods (the finalizer) and ends their processes.
func TestClusterComesUpAndGoes(t *testing.T) {
	needEnvtest(t)
	ctx := context.Background()
	c := newCluster("up", 2, 3)
	if err := suite.client.Create(ctx, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	got := waitReady(t, ctx, "up", 3)
	if !got.Status.HeadReady || got.Status.DashboardURL != "https://up-head.rayo-test.svc:8265" || got.Status.Address != "up-head.rayo-test.svc:6379" {
		t.Errorf("status = %+v", got.Status)
	}
	if !controllerutil.ContainsFinalizer(got, controllers.ClusterFinalizer) {
		t.Errorf("finalizers = %v, want %s", got.Finalizers, controllers.ClusterFinalizer)
	}
	pods, err := clusterPods(ctx, "up", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 3 {
		t.Fatalf("%d pods, want 3", len(pods))
	}
	checkUpPods(t, got, pods)
	var svc corev1.Service
	if err := suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "up-head"}, &svc); err != nil {
		t.Fatalf("head service: %v", err)
	}
	if tok := token(t, ctx, "up"); len(tok) != 64 {
		t.Errorf("token %q: want 64 hex digits", tok)
	}
	checkUpStatusNodes(t, ctx)

	checkClusterTLS(t, ctx, "up", pods)
	ca := tlsSecret(t, ctx, "up")

	replaceDeletedWorker(t, ctx, pods)
	checkCAKept(t, ctx, "up", ca)

	checkUpDeleted(t, ctx, pods)
}

// checkUpPods checks the cluster up's pods: owned by it, with the store's
// size and the token file in their environment, a readiness probe, a
// preStop hook and TLS, and run by the stand-in kubelet.
func checkUpPods(t *testing.T, got *v1alpha1.RayoCluster, pods []corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != got.UID || !*p.OwnerReferences[0].Controller {
			t.Errorf("pod %s: owner references %+v, want the cluster", p.Name, p.OwnerReferences)
		}
		ctr := p.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range ctr.Env {
			env[e.Name] = e.Value
		}
		// The store's size comes from the memory limit (the memfd is
		// charged to the container): 20% of 512 or 256 MiB.
		want := map[string]string{controllers.HeadGroup: "102MiB", "small": "51MiB"}[p.Labels[controllers.LabelGroup]]
		if env["RAYO_OBJECT_STORE_MEMORY"] != want || env["RAYO_TOKEN_FILE"] != controllers.TokenFile {
			t.Errorf("pod %s: store %q token file %q, want %q and %q", p.Name, env["RAYO_OBJECT_STORE_MEMORY"], env["RAYO_TOKEN_FILE"], want, controllers.TokenFile)
		}
		if ctr.ReadinessProbe == nil || ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Exec == nil {
			t.Fatalf("pod %s: no readiness probe or preStop hook", p.Name)
		}
		checkPodTLS(t, &p)
		if p.Spec.NodeName != "standin" || p.Status.PodIP != "127.0.0.1" {
			t.Errorf("pod %s: node %q IP %q: the stand-in kubelet did not run it", p.Name, p.Spec.NodeName, p.Status.PodIP)
		}
	}
}

// checkUpStatusNodes waits until `rayo status` shows the cluster up's
// three alive nodes, and checks that one is the head and the others are
// of the group small.
func checkUpStatusNodes(t *testing.T, ctx context.Context) {
	t.Helper()
	var nodes []statusNode
	waitFor(t, time.Minute, "rayo status showing 3 alive nodes", func() (bool, error) {
		var err error
		nodes, err = rayoStatus(t, ctx, "up")
		return len(nodes) == 3, err
	})
	heads, types := 0, []string{}
	for _, n := range nodes {
		if n.Head {
			heads++
		}
		types = append(types, n.Labels["rayo.io/node-type"])
	}
	slices.Sort(types)
	if heads != 1 || !slices.Equal(types, []string{"head", "small", "small"}) {
		t.Errorf("rayo status: %d heads, node types %v", heads, types)
	}
}

// replaceDeletedWorker deletes one of the cluster up's worker pods and
// waits until the operator makes a pod again in its place. The deleted
// pod's preStop hook drains its node: it leaves the cluster DEAD,
// drained, not lost.
func replaceDeletedWorker(t *testing.T, ctx context.Context, pods []corev1.Pod) {
	t.Helper()
	victim := pods[0]
	if victim.Labels[controllers.LabelGroup] == controllers.HeadGroup {
		victim = pods[1]
	}
	if err := suite.client.Delete(ctx, &victim); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the deleted worker's node drained", func() (bool, error) {
		all, err := rayoStatusAll(ctx, "up")
		for _, n := range all {
			if n.Labels[autoscaler.LabelInstance] == victim.Name {
				return n.State == "DEAD" && strings.Contains(n.DeathReason, "drained"), err
			}
		}
		return false, err
	})
	waitFor(t, 2*time.Minute, "a worker pod replaced, 3 ready again", func() (bool, error) {
		c, err := getCluster(ctx, "up")
		if err != nil {
			return false, err
		}
		ps, err := clusterPods(ctx, "up", "small")
		return err == nil && c.Status.ReadyNodes == 3 && len(ps) == 2 &&
			!slices.ContainsFunc(ps, func(p corev1.Pod) bool { return p.Name == victim.Name }), err
	})
}

// checkUpDeleted deletes the cluster up and checks that its pods'
// processes end and that its Service and Secrets go.
func checkUpDeleted(t *testing.T, ctx context.Context, pods []corev1.Pod) {
	t.Helper()
	running := suite.kubelet.Running()
	deleteCluster(t, ctx, "up")
	for _, p := range pods {
		if _, ok := suite.kubelet.Ports(p.Name); ok {
			t.Errorf("pod %s's process still runs after the cluster is gone", p.Name)
		}
	}
	if n := suite.kubelet.Running(); n > running-3 {
		t.Errorf("%d processes run after deleting the cluster, had %d", n, running)
	}
	for _, name := range []string{"up-head", "up-token", "up-tls"} {
		err := suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: name}, &corev1.Secret{})
		if name == "up-head" {
			err = suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: name}, &corev1.Service{})
		}
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s after the cluster's deletion: %v, want not found", name, err)
		}
	}
}

// The API server refuses a RayoCluster whose worker group's numbers do
// not hold together, by the CRD's validation.
func TestClusterValidation(t *testing.T) {
	needEnvtest(t)
	ctx := context.Background()
	for name, edit := range map[string]func(*v1alpha1.RayoCluster){
		"bad-range":    func(c *v1alpha1.RayoCluster) { c.Spec.WorkerGroups[0].MinReplicas = 4 },
		"bad-replicas": func(c *v1alpha1.RayoCluster) { c.Spec.WorkerGroups[0].Replicas = 5 },
		"bad-name":     func(c *v1alpha1.RayoCluster) { c.Spec.WorkerGroups[0].Name = "Big_Group" },
		"bad-store":    func(c *v1alpha1.RayoCluster) { c.Spec.Head.ObjectStorePercent = 95 },
		"no-cpu":       func(c *v1alpha1.RayoCluster) { c.Spec.Head.CPU = 0 },
	} {
		c := newCluster(name, 1, 3)
		edit(c)
		err := suite.client.Create(ctx, c)
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: create = %v, want invalid", name, err)
			_ = suite.client.Delete(ctx, c)
		}
	}
}
