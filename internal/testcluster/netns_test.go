package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// netns is a small network of namespaces for one test: a hub namespace
// holding a bridge, and one namespace per node, each joined to the bridge
// by a veth pair and given its own address on one /24. The test process's
// own namespace joins the bridge too (at .254) so that it can reach the
// control store. The bridge lives in the hub, not in the root namespace, so
// that the root namespace's firewall (a FORWARD policy of DROP, with
// bridged traffic sent through it) cannot get in the way.
type netns struct {
	t      *testing.T
	hub    string   // the hub namespace, holding the bridge
	ns     []string // the nodes' namespaces
	hostIf []string // each node's veth on the bridge side, in the hub
	addr   []string // each node's address
	rootIf string   // the root namespace's veth
	subnet string   // 10.201.X
}

// ipCmd runs ip with args and fails the test if it fails.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// freeSubnet picks 10.201.X.0/24 with no address or route of this
// machine in it, starting from the pid so that tests running at once pick
// apart.
func freeSubnet(t *testing.T) string {
	t.Helper()
	addrs, _ := exec.Command("ip", "-4", "addr").CombinedOutput()
	routes, _ := exec.Command("ip", "-4", "route").CombinedOutput()
	used := string(addrs) + string(routes)
	for i := 0; i < 250; i++ {
		x := (os.Getpid()+i)%250 + 1
		s := fmt.Sprintf("10.201.%d", x)
		if !strings.Contains(used, s+".") {
			return s
		}
	}
	t.Skip("no free 10.201.X.0/24 subnet")
	return ""
}

// newNetns makes n node namespaces on one subnet; t.Cleanup removes them
// all, even when the set-up fails half-way. Call it before starting any
// process in them: cleanups run last first, so processes started later
// are killed before their namespaces go.
func newNetns(t *testing.T, n int) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespaces need ip (iproute2): ", err)
	}
	pid := os.Getpid()
	nw := &netns{
		t:      t,
		hub:    fmt.Sprintf("rayo%d-hub", pid),
		rootIf: fmt.Sprintf("rv%dr", pid),
		subnet: freeSubnet(t),
	}
	t.Cleanup(nw.remove)
	ipCmd(t, "netns", "add", nw.hub)
	ipCmd(t, "-n", nw.hub, "link", "set", "lo", "up")
	ipCmd(t, "-n", nw.hub, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", nw.hub, "link", "set", "br0", "up")

	// The root namespace's way in.
	ipCmd(t, "link", "add", nw.rootIf, "type", "veth", "peer", "name", "root", "netns", nw.hub)
	ipCmd(t, "-n", nw.hub, "link", "set", "root", "master", "br0", "up")
	ipCmd(t, "addr", "add", nw.subnet+".254/24", "dev", nw.rootIf)
	ipCmd(t, "link", "set", nw.rootIf, "up")

	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("rayo%d-%d", pid, i)
		hostIf := fmt.Sprintf("n%d", i)
		addr := fmt.Sprintf("%s.%d", nw.subnet, i)
		ipCmd(t, "netns", "add", ns)
		nw.ns = append(nw.ns, ns)
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", nw.hub, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", nw.hub, "link", "set", hostIf, "master", "br0", "up")
		ipCmd(t, "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		nw.hostIf = append(nw.hostIf, hostIf)
		nw.addr = append(nw.addr, addr)
	}
	return nw
}

// wrap runs a command in node i's namespace.
func (nw *netns) wrap(i int) []string { return []string{"ip", "netns", "exec", nw.ns[i]} }

// cut takes node i's link to the bridge down on the bridge's side: its
// packets go nowhere, and nobody is told (no RST, no FIN).
func (nw *netns) cut(i int) { ipCmd(nw.t, "-n", nw.hub, "link", "set", nw.hostIf[i], "down") }

// remove deletes the namespaces (and with them every veth and the bridge).
func (nw *netns) remove() {
	for _, ns := range append(append([]string(nil), nw.ns...), nw.hub) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			nw.t.Logf("ip netns del %s: %v %s", ns, err, out)
		}
	}
	// Gone with its peer in the hub; in case the hub was never made.
	_ = exec.Command("ip", "link", "del", nw.rootIf).Run()
}

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
		// Two tasks run on c when it is cut off: their owner hears of c's
		// death from the control store (its connections to c stay open,
		// silent) and runs them again elsewhere.
		dir := t.TempDir()
		d := start(t, head, driver, "failover", dir, cn.ID())
		d.until(t, "submitted", 30*time.Second)
		waitFile(t, dir, cn.ID())
		cut := time.Now()
		nw.cut(2)
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
	})
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}

// nodeName is a node's ID as rayo.NodeID and (*Node).ID name it.
func nodeName(id []byte) string {
	s := fmt.Sprintf("%x", id)
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}
