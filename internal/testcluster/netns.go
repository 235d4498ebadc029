package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Netns is a small network of namespaces for one test: a hub namespace
// holding a bridge, and one namespace per node, each joined to the bridge
// by a veth pair and given its own address on one /24. The test process's
// own namespace joins the bridge too (at .254) so that it can reach the
// control store. The bridge lives in the hub, not in the root namespace, so
// that the root namespace's firewall (a FORWARD policy of DROP, with
// bridged traffic sent through it) cannot get in the way.
//
// A node started under Wrap(i) (StartWrapped, AddNodeWrapped), listening
// on Addr(i), can be cut off from the others without a word (Cut) and
// joined again (Heal): a network partition.
type Netns struct {
	t      testing.TB
	hub    string   // the hub namespace, holding the bridge
	ns     []string // the nodes' namespaces
	hostIf []string // each node's veth on the bridge side, in the hub
	addr   []string // each node's address
	rootIf string   // the root namespace's veth
	subnet string   // 10.201.X
}

// NetnsMissing says why network namespaces cannot be made here (not
// root, no ip command), or "" when they can.
func NetnsMissing() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "network namespaces need ip (iproute2): " + err.Error()
	}
	return ""
}

// ipCmd runs ip with args and fails the test if it fails.
func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// freeSubnet picks 10.201.X.0/24 with no address or route of this
// machine in it, starting from the pid so that tests running at once pick
// apart.
func freeSubnet(t testing.TB) string {
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

// NewNetns makes n node namespaces on one subnet, skipping the test (with
// NetnsMissing's reason) where they cannot be made; t.Cleanup removes
// them all, even when the set-up fails half-way. Call it before starting
// any process in them: cleanups run last first, so processes started
// later are killed before their namespaces go.
func NewNetns(t testing.TB, n int) *Netns {
	t.Helper()
	if why := NetnsMissing(); why != "" {
		t.Skip(why)
	}
	pid := os.Getpid()
	nw := &Netns{
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

// Wrap is the command prefix that runs a command in node i's namespace.
func (nw *Netns) Wrap(i int) []string { return nw.wrap(i) }

// Addr is node i's address.
func (nw *Netns) Addr(i int) string { return nw.addr[i] }

// Cut takes node i's link to the bridge down on the bridge's side: its
// packets go nowhere, and nobody is told (no RST, no FIN).
func (nw *Netns) Cut(i int) { nw.cut(i) }

// Heal brings node i's link to the bridge back up.
func (nw *Netns) Heal(i int) { nw.heal(i) }

func (nw *Netns) wrap(i int) []string { return []string{"ip", "netns", "exec", nw.ns[i]} }

func (nw *Netns) cut(i int) { ipCmd(nw.t, "-n", nw.hub, "link", "set", nw.hostIf[i], "down") }

func (nw *Netns) heal(i int) { ipCmd(nw.t, "-n", nw.hub, "link", "set", nw.hostIf[i], "up") }

// remove deletes the namespaces (and with them every veth and the bridge).
func (nw *Netns) remove() {
	for _, ns := range append(append([]string(nil), nw.ns...), nw.hub) {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			nw.t.Logf("ip netns del %s: %v %s", ns, err, out)
		}
	}
	// Gone with its peer in the hub; in case the hub was never made.
	_ = exec.Command("ip", "link", "del", nw.rootIf).Run()
}
