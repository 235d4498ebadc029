package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/node"
)

// startInProcessHead starts a head in this process (its control store
// too, no API server) and closes it when the test ends.
func startInProcessHead(t *testing.T) (*node.Node, node.Config) {
	t.Helper()
	cfg := node.Config{
		Head: true, Host: "127.0.0.1", Port: freePort(t), NumCPUs: 1, StateDir: t.TempDir(),
		Token: node.NewToken(), ObjectStoreMemory: 16 << 20,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n, cfg
}

// runNode's steps on a head started in this process: the node types an
// earlier head's autoscaler left are withdrawn (and a control store that
// refuses the token says so), the cluster record is the head's, or a
// joining node's when there is none, and the announcement says which.
func TestRunNodeSteps(t *testing.T) {
	n, cfg := startInProcessHead(t)
	ctx := context.Background()

	// Node types an earlier head's autoscaler left.
	s := autoscaler.NewRPCStore(n.GCSAddr(), cfg.Token)
	defer s.Close()
	if err := s.KVPut(ctx, autoscaler.Namespace, autoscaler.KeyLaunchable, []byte("left over")); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.Token = "not-the-cluster-token-at-all-0123456789"
	if err := withdrawNodeTypes(n, bad); err == nil {
		t.Fatal("withdrawing with the wrong token succeeded")
	}
	if err := withdrawNodeTypes(n, cfg); err != nil {
		t.Fatal(err)
	}
	if b, _, err := s.KVGet(ctx, autoscaler.Namespace, autoscaler.KeyLaunchable); err != nil || len(b) != 0 {
		t.Fatalf("the node types after withdrawing: %q, %v", b, err)
	}

	// The cluster record: a joining node writes it only when there is
	// none; a head always does.
	join := cfg
	join.Head, join.Address = false, "127.0.0.1:1"
	if err := node.WriteCluster(cfg.StateDir, node.ClusterInfo{Address: "elsewhere:1"}); err != nil {
		t.Fatal(err)
	}
	if err := recordCluster(join, n); err != nil {
		t.Fatal(err)
	}
	if rec, err := node.ReadCluster(cfg.StateDir); err != nil || rec.Address != "elsewhere:1" {
		t.Fatalf("a joining node replaced the record of another: %+v %v", rec, err)
	}
	if err := recordCluster(cfg, n); err != nil {
		t.Fatal(err)
	}
	if rec, err := node.ReadCluster(cfg.StateDir); err != nil || rec.Address != n.GCSAddr() {
		t.Fatalf("the head's record: %+v %v, want address %s", rec, err, n.GCSAddr())
	}
	node.RemoveCluster(cfg.StateDir)
	if err := recordCluster(join, n); err != nil {
		t.Fatal(err)
	}
	if rec, err := node.ReadCluster(cfg.StateDir); err != nil || rec.Address != n.GCSAddr() {
		t.Fatalf("a joining node with no record: %+v %v", rec, err)
	}

	// The announcement, of the head and of a joining node.
	var out bytes.Buffer
	announceNode(&out, cfg, n)
	for _, want := range []string{
		fmt.Sprintf("rayo: started a cluster; its address is %s\n", n.GCSAddr()),
		"rayo: session folder " + n.SessionDir() + "\n",
		"rayo: object store 16.0 MiB (",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the head's announcement does not say %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "dashboard at") {
		t.Fatalf("a head with no API server announces one:\n%s", out.String())
	}
	out.Reset()
	announceNode(&out, join, n)
	if !strings.HasPrefix(out.String(), "rayo: joined the cluster at 127.0.0.1:1\n") || strings.Contains(out.String(), "started a cluster") {
		t.Fatalf("a joining node's announcement:\n%s", out.String())
	}
}
