package testcluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// netns is the tests' name for Netns.
type netns = Netns

// newNetns is NewNetns.
func newNetns(t *testing.T, n int) *netns { return NewNetns(t, n) }

// TestNetnsCluster runs a cluster whose three nodes are in network
// namespaces of their own, on addresses of their own, moves objects
// between them, then cuts one off without a word and checks that the
// control store declares it dead in time and work goes on without it.
func TestNetnsCluster(t *testing.T) {
	began := time.Now()
	nw := newNetns(t, 3)
	t.Logf("namespaces %v on %s.0/24 (root at .254), set up in %v", nw.ns, nw.subnet, time.Since(began).Round(time.Millisecond))
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")

	up := time.Now()
	c := StartWrapped(t, rayo, nw.wrap(0), nw.addr[0], 1)
	b := c.AddNodeWrapped(nw.wrap(1), nw.addr[1], 1)
	cn := c.AddNodeWrapped(nw.wrap(2), nw.addr[2], 1)
	head := c.Head
	t.Logf("3 nodes alive after %v", time.Since(up).Round(time.Millisecond))
	ids := map[string]string{head.ID(): "head", b.ID(): "b", cn.ID(): "c"}

	// Each node registered the address it was given, not loopback.
	checkNoLoopback(t, c, ids)

	t.Run("Spread", func(t *testing.T) {
		start := time.Now()
		kv := run(t, head, driver, "spread")
		for id, name := range ids {
			if !strings.Contains(kv["nodes"], id) {
				t.Errorf("SPREAD did not use %s (%s): used %s", name, id, kv["nodes"])
			}
		}
		t.Logf("spread over 3 namespaces in %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("ObjectsMoveBetweenNamespaces", func(t *testing.T) {
		start := time.Now()
		kv := run(t, head, driver, "objects", b.ID(), cn.ID())
		want := float64(8<<20) * 0.5
		if kv["remote_sum"] != fmtF(want) || kv["driver_sum"] != fmtF(want) || kv["put_sum"] != fmtF(2<<20) {
			t.Fatalf("sums: %v (want %v, %v)", kv, want, 2<<20)
		}
		t.Logf("64 MiB b->c, b->driver, 8 MiB driver->c in %v", time.Since(start).Round(time.Millisecond))
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("CutOff", func(t *testing.T) {
		cutOffC(t, nw, c, driver, b, cn)
	})
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}

// cutOffC cuts node c (cn, in namespace 2) off under running tasks and
// checks that it is declared dead in time, that its tasks finish
// elsewhere, and that new work spreads over the head and b.
func cutOffC(t *testing.T, nw *netns, c *Cluster, driver string, b, cn *Node) {
	t.Helper()
	head := c.Head
	// Two tasks run on c when it is cut off: their owner hears of c's
	// death from the control store (its connections to c stay open,
	// silent) and runs them again elsewhere.
	dir := t.TempDir()
	d := start(t, head, driver, "failover", dir, cn.ID())
	d.until(t, "submitted", 30*time.Second)
	waitFile(t, dir, cn.ID())
	cut := time.Now()
	nw.cut(2)
	state := waitDeadAfterCut(t, c, cn, cut)
	took := time.Since(cut)
	t.Logf("c declared DEAD %v after its link went down", took.Round(time.Millisecond))
	// The control store sweeps every HealthTimeout/5 (1 s) for nodes
	// silent for HealthTimeout (5 s): at most about 6 s.
	if took > 6500*time.Millisecond {
		t.Errorf("c declared dead after %v, want about 5 s", took)
	}
	if state[head.ID()] != "ALIVE" || state[b.ID()] != "ALIVE" {
		t.Fatalf("after cutting c off: %v", state)
	}
	finished := d.until(t, "nodes", 30*time.Second)
	if strings.Contains(finished, cn.ID()) || finished == "" {
		t.Fatalf("the tasks cut off on c finished on %q", finished)
	}
	t.Logf("the tasks cut off on c finished elsewhere %v after the cut", time.Since(cut).Round(time.Millisecond))

	start := time.Now()
	kv := run(t, head, driver, "spread")
	if strings.Contains(kv["nodes"], cn.ID()) {
		t.Fatalf("SPREAD after the cut used c: %s", kv["nodes"])
	}
	if !strings.Contains(kv["nodes"], head.ID()) || !strings.Contains(kv["nodes"], b.ID()) {
		t.Fatalf("SPREAD after the cut used %s, want the head and b", kv["nodes"])
	}
	t.Logf("spread over the head and b in %v", time.Since(start).Round(time.Millisecond))
}

// waitDeadAfterCut waits until the control store declares cn dead, cut
// being when its link went down, and returns the nodes' states then.
func waitDeadAfterCut(t *testing.T, c *Cluster, cn *Node, cut time.Time) map[string]string {
	t.Helper()
	deadline := cut.Add(15 * time.Second)
	var state map[string]string
	for {
		nodes, err := c.ListNodes()
		state = map[string]string{}
		for _, x := range nodes {
			state[nodeName(x.NodeId)] = x.State
		}
		if err == nil && state[cn.ID()] == "DEAD" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c not declared dead %v after the cut: %v (err %v)", time.Since(cut).Round(time.Millisecond), state, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the control store
	}
	return state
}

// checkNoLoopback checks that no node registered a loopback address; ids
// names the nodes in the log.
func checkNoLoopback(t *testing.T, c *Cluster, ids map[string]string) {
	t.Helper()
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range nodes {
		t.Logf("node %s (%s) at %s: %s", nodeName(x.NodeId), ids[nodeName(x.NodeId)], x.Address, x.State)
		if strings.HasPrefix(x.Address, "127.") {
			t.Errorf("node %s registered a loopback address %s", nodeName(x.NodeId), x.Address)
		}
	}
}

// nodeName is a node's ID as rayo.NodeID and (*Node).ID name it.
func nodeName(id []byte) string {
	s := fmt.Sprintf("%x", id)
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}
