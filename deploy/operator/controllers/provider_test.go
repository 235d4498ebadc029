package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/rayo-dev/rayo/deploy/operator/controllers"
	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/autoscaler/kubernetes"
)

// headCredentials writes what a head pod's service account would have
// mounted: a token issued by the API server for the operator's head
// service account (so its Role is what is tested), and the API
// server's CA.
func headCredentials(t *testing.T, ctx context.Context, cluster string) (tokenFile, caFile string) {
	t.Helper()
	cs, err := k8s.NewForConfig(suite.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tr *authv1.TokenRequest
	waitFor(t, time.Minute, "a token for the head's service account", func() (bool, error) {
		var err error
		tr, err = cs.CoreV1().ServiceAccounts(testNS).CreateToken(ctx, controllers.HeadName(cluster),
			&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{}}, metav1CreateOptions())
		return err == nil, err
	})
	dir := t.TempDir()
	tokenFile, caFile = filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, suite.cfg.CAData, 0o600); err != nil {
		t.Fatal(err)
	}
	return tokenFile, caFile
}

// instances returns the provider's instances by state.
func instances(ctx context.Context, p *kubernetes.Provider) (map[autoscaler.InstanceState][]string, error) {
	list, err := p.Instances(ctx)
	if err != nil {
		return nil, err
	}
	out := map[autoscaler.InstanceState][]string{}
	for _, in := range list {
		if in.NodeType != "small" {
			return nil, nil
		}
		out[in.State] = append(out[in.State], in.ID)
	}
	return out, nil
}

// The kubernetes Provider, as the head's autoscaler would use it with
// its service account, scales a RayoCluster's worker group 1 -> 3 -> 1:
// Launch raises the replicas and the operator makes the pods, which join
// the cluster; Terminate names the pods to remove, and the operator
// removes exactly those.
func TestProviderScales(t *testing.T) {
	needEnvtest(t)
	ctx := context.Background()
	if err := suite.client.Create(ctx, newCluster("scale", 1, 3)); err != nil {
		t.Fatalf("create: %v", err)
	}
	defer deleteCluster(t, ctx, "scale")
	waitReady(t, ctx, "scale", 2)
	tokenFile, caFile := headCredentials(t, ctx, "scale")
	p, err := kubernetes.New(ctx, kubernetes.Config{Cluster: "scale", Namespace: testNS,
		APIServer: suite.cfg.Host, TokenFile: tokenFile, CAFile: caFile})
	if err != nil {
		t.Fatalf("provider: %v", err)
	}
	defer p.Close()
	types := p.NodeTypes()
	if len(types) != 1 || types[0].Name != "small" || types[0].Resources["CPU"] != 1 || types[0].MaxWorkers != 3 || types[0].MinWorkers != 0 {
		t.Fatalf("node types = %+v", types)
	}

	running := launchToThree(t, ctx, p)
	terminateToNone(t, ctx, p, running)
}

// launchToThree launches two workers with p on the cluster scale and
// waits until its three workers run and join; launches past the maximum,
// of an unknown group or of no nodes fail. It returns the running pods.
func launchToThree(t *testing.T, ctx context.Context, p *kubernetes.Provider) []string {
	t.Helper()
	if err := p.Launch(ctx, "small", 2); err != nil {
		t.Fatalf("launch: %v", err)
	}
	start := time.Now()
	waitReady(t, ctx, "scale", 4)
	t.Logf("1 -> 3 workers: pods ready %v after Launch", time.Since(start).Round(time.Millisecond))
	var running []string
	waitFor(t, time.Minute, "3 running instances", func() (bool, error) {
		got, err := instances(ctx, p)
		running = got[autoscaler.InstanceRunning]
		return len(running) == 3 && len(got) == 1, err
	})
	waitFor(t, time.Minute, "rayo status showing 4 alive nodes", func() (bool, error) {
		nodes, err := rayoStatus(t, ctx, "scale")
		return len(nodes) == 4, err
	})
	if err := p.Launch(ctx, "small", 1); err == nil || !strings.Contains(err.Error(), "maxReplicas 3") {
		t.Errorf("launch past the maximum = %v, want an error naming maxReplicas 3", err)
	}
	if err := p.Launch(ctx, "huge", 1); err == nil || !strings.Contains(err.Error(), `no worker group "huge"`) {
		t.Errorf("launch of an unknown group = %v", err)
	}
	if err := p.Launch(ctx, "small", 0); err == nil {
		t.Errorf("launch of 0 nodes: no error")
	}
	return running
}

// terminateToNone removes two of the running workers by name with p and
// checks that the third stays, then removes the last one. Terminating the
// head or an unknown pod fails.
func terminateToNone(t *testing.T, ctx context.Context, p *kubernetes.Provider, running []string) {
	t.Helper()
	// Remove two named workers; the third stays.
	slices.Sort(running)
	gone, stays := running[:2], running[2]
	if err := p.Terminate(ctx, gone); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	waitFor(t, 2*time.Minute, "the two named workers gone, one left", func() (bool, error) {
		pods, err := clusterPods(ctx, "scale", "small")
		if err != nil {
			return false, err
		}
		c, err := getCluster(ctx, "scale")
		if err != nil {
			return false, err
		}
		return len(pods) == 1 && pods[0].Name == stays && len(c.Spec.WorkerGroups[0].WorkersToDelete) == 0 &&
			c.Spec.WorkerGroups[0].Replicas == 1 && c.Status.ReadyNodes == 2, nil
	})
	for _, id := range gone {
		if _, ok := suite.kubelet.Ports(id); ok {
			t.Errorf("terminated pod %s still runs", id)
		}
	}
	if err := p.Terminate(ctx, []string{controllers.HeadName("scale")}); err == nil || !strings.Contains(err.Error(), "not a worker pod") {
		t.Errorf("terminate the head = %v, want refused", err)
	}
	if err := p.Terminate(ctx, []string{"no-such-pod"}); err == nil {
		t.Errorf("terminate an unknown pod: no error")
	}
	if err := p.Terminate(ctx, []string{stays}); err != nil {
		t.Errorf("terminate down to the minimum 0: %v", err)
	}
	waitFor(t, 2*time.Minute, "no workers left", func() (bool, error) {
		pods, err := clusterPods(ctx, "scale", "small")
		return err == nil && len(pods) == 0, err
	})
}

// The head's service account may scale only its own cluster.
func TestProviderRBAC(t *testing.T) {
	needEnvtest(t)
	ctx := context.Background()
	for _, name := range []string{"mine", "theirs"} {
		c := newCluster(name, 0, 1)
		if err := suite.client.Create(ctx, c); err != nil {
			t.Fatalf("create: %v", err)
		}
		defer deleteCluster(t, ctx, name)
	}
	waitFor(t, time.Minute, "the head service account of mine", func() (bool, error) {
		var sa corev1.ServiceAccount
		return suite.client.Get(ctx, objKey(controllers.HeadName("mine")), &sa) == nil, nil
	})
	tokenFile, caFile := headCredentials(t, ctx, "mine")
	cfg := kubernetes.Config{Cluster: "theirs", Namespace: testNS, APIServer: suite.cfg.Host, TokenFile: tokenFile, CAFile: caFile}
	if _, err := kubernetes.New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("provider of another cluster with mine's account = %v, want 403", err)
	}
	cfg.Cluster = "mine"
	p, err := kubernetes.New(ctx, cfg)
	if err != nil {
		t.Fatalf("provider of its own cluster: %v", err)
	}
	p.Close()
}
