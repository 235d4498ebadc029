// Package testcluster starts real rayo clusters for tests: a head and
// worker nodes, each `rayo start --block` in a process group of its own on
// loopback ports (or in a network namespace), each with a state folder of
// its own as if on its own machine, and lets a test kill and restart any
// of them and run drivers on any of them.
package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Build compiles a main package of this module (such as "./cmd/rayo") into
// the test's temporary folder and returns the executable's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Cluster is a running test cluster.
type Cluster struct {
	t     testing.TB
	Rayo  string // the rayo executable
	Addr  string // the head's control store
	Token string
	Head  *Node
	Nodes []*Node // the head first

	mu sync.Mutex // protects tls, joinToken
	// With TLS (rayo start's default), the head's credentials, which the
	// test uses to reach the control store, and the join token nodes are
	// started with.
	tls       *rpc.TLS
	joinToken string
}

// Node is one node's daemon.
type Node struct {
	c        *Cluster
	Name     string
	StateDir string
	args     []string
	wrap     []string // runs the daemon inside this command (ip netns exec NS)
	mu       sync.Mutex
	cmd      *exec.Cmd
	out      *bytes.Buffer
	done     chan struct{}
	exit     error  // how the daemon ended, once done is closed
	id       string // the node's ID while it runs (and after it is killed)
}

// Start starts a head with cpus CPUs and the given extra `rayo start`
// arguments.
func Start(t testing.TB, rayo string, cpus int, extra ...string) *Cluster {
	t.Helper()
	return StartWrapped(t, rayo, nil, "127.0.0.1", cpus, extra...)
}

// StartWrapped starts a head whose daemon runs under wrap (e.g. ip netns
// exec), listening on host.
func StartWrapped(t testing.TB, rayo string, wrap []string, host string, cpus int, extra ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Rayo: rayo, Token: node.NewToken()}
	port := FreePort(t)
	c.Addr = net.JoinHostPort(host, fmt.Sprint(port))
	args := append([]string{"start", "--head", "--host", host, "--port", fmt.Sprint(port), "--num-cpus", fmt.Sprint(cpus),
		"--dashboard-port", fmt.Sprint(FreePort(t))}, extra...)
	c.Head = c.start("head", wrap, args)
	c.WaitAlive(1, 30*time.Second)
	return c
}

// AddNode starts a worker node with cpus CPUs and extra `rayo start`
// arguments, and waits until the control store has it.
func (c *Cluster) AddNode(cpus int, extra ...string) *Node {
	return c.AddNodeWrapped(nil, "127.0.0.1", cpus, extra...)
}

// AddNodeWrapped starts a worker node under wrap, listening on host.
func (c *Cluster) AddNodeWrapped(wrap []string, host string, cpus int, extra ...string) *Node {
	c.t.Helper()
	want := c.alive() + 1
	args := append([]string{"start", "--address", c.Addr, "--host", host, "--num-cpus", fmt.Sprint(cpus)}, extra...)
	n := c.start(fmt.Sprintf("node%d", len(c.Nodes)), wrap, args)
	c.WaitAlive(want, 30*time.Second)
	return n
}

func (c *Cluster) start(name string, wrap, args []string) *Node {
	c.t.Helper()
	n := &Node{c: c, Name: name, StateDir: filepath.Join(c.t.TempDir(), name), args: args, wrap: wrap}
	if err := os.MkdirAll(n.StateDir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	c.Nodes = append(c.Nodes, n)
	n.launch()
	c.t.Cleanup(func() {
		n.Kill()
		if c.t.Failed() {
			c.t.Logf("%s said:\n%s", n.Name, n.Output())
		}
	})
	return n
}

func (n *Node) launch() {
	argv := append(append(append([]string(nil), n.wrap...), n.c.Rayo), append(n.args, "--block")...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = n.Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = syncWriter{&n.mu, out}, syncWriter{&n.mu, out}
	if err := cmd.Start(); err != nil {
		n.c.t.Fatalf("start %s: %v", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.exit = err
		n.mu.Unlock()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.out, n.done, n.id = cmd, out, done, ""
	n.mu.Unlock()
}

// Env is the environment of a process on this node: drivers started with
// it join the cluster through this node.
func (n *Node) Env() []string {
	token := n.c.Token
	if j := n.c.JoinToken(); j != "" {
		token = j
	}
	return append(os.Environ(), "RAYO_STATE_DIR="+n.StateDir, "RAYO_ADDRESS="+n.c.Addr, "RAYO_TOKEN="+token, "RAYO_DEBUG=1")
}

// Command is a driver (or any program) run on this node.
func (n *Node) Command(name string, args ...string) *exec.Cmd {
	argv := append(append(append([]string(nil), n.wrap...), name), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = n.Env()
	return cmd
}

// Output is what the daemon printed.
func (n *Node) Output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// ID is the node's ID, as rayo.NodeID names it: since it was last
// started.
func (n *Node) ID() string {
	n.mu.Lock()
	id, done := n.id, n.done
	n.mu.Unlock()
	if id != "" {
		return id
	}
	// The daemon writes its record once it has joined: the control store
	// counts it alive (WaitAlive) a moment before. Wait for the record
	// while the daemon runs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, err := node.ReadCluster(n.StateDir)
		if err == nil {
			n.mu.Lock()
			if n.done == done {
				n.id = rec.Node
			}
			n.mu.Unlock()
			return rec.Node
		}
		exited := false
		select {
		case <-done:
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			n.c.t.Fatalf("%s: %v", n.Name, err)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's file
	}
}

// Dashboard is the head's API server, http://HOST:PORT.
func (c *Cluster) Dashboard() string {
	rec, err := node.ReadCluster(c.Head.StateDir)
	if err != nil || rec.Dashboard == "" {
		c.t.Fatalf("the head has no dashboard: %v", err)
	}
	return rec.Dashboard
}

// Kill ends the node at once: SIGKILL to its daemon and its workers.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	n.ID() // remembered for after
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	// A node's cluster record names a raylet that is gone.
	node.RemoveCluster(n.StateDir)
}

// Restart starts a killed node again (a new node to the cluster).
func (n *Node) Restart() {
	n.Kill()
	want := n.c.alive() + 1
	n.launch()
	n.c.WaitAlive(want, 30*time.Second)
}

// WaitAlive waits until the control store counts want nodes alive.
func (c *Cluster) WaitAlive(want int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := c.alive()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("want %d nodes alive, have %d after %v", want, got, within)
		}
		time.Sleep(50 * time.Millisecond) // polling other processes
	}
}

// ListNodes asks the control store for the nodes.
func (c *Cluster) ListNodes() ([]*pb.NodeInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	list := &pb.NodeList{}
	if err := conn.Call(ctx, rpc.MListNodes, &pb.Empty{}, list); err != nil {
		return nil, err
	}
	return list.Nodes, nil
}

// Dial connects to the control store with the token (and, when the
// cluster has TLS, the head's certificate).
func (c *Cluster) Dial(ctx context.Context) (*rpc.Conn, error) {
	return rpc.DialTLS(ctx, "tcp:"+c.Addr, c.Token, c.TLS(), nil)
}

// TLS is the head's credentials, once it has written them (nil while it
// has not, or when the cluster runs without TLS).
func (c *Cluster) TLS() *rpc.TLS {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tls == nil && c.Head != nil {
		if rec, err := node.ReadCluster(c.Head.StateDir); err == nil && rec.TLSDir != "" {
			if creds, err := pki.LoadDir(rec.TLSDir, ""); err == nil {
				c.tls, c.joinToken = rpc.NewTLS(creds), rec.JoinToken
			}
		}
	}
	return c.tls
}

// JoinToken is what nodes join with when the cluster has TLS
// (K10<CA fingerprint>::<secret>), or "".
func (c *Cluster) JoinToken() string {
	c.TLS()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.joinToken
}

func (c *Cluster) alive() int {
	nodes, err := c.ListNodes()
	if err != nil {
		return 0
	}
	n := 0
	for _, x := range nodes {
		if x.State == "ALIVE" {
			n++
		}
	}
	return n
}

// FreePort is a TCP port free on loopback just now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type syncWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
