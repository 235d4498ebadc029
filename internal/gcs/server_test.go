package gcs

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func start(t *testing.T, timeout time.Duration) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Serve(ln, Config{Token: "tok", HealthTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, "tcp:" + ln.Addr().String()
}

func join(t *testing.T, addr, nodeAddr string) (*rpc.Conn, ids.NodeID) {
	t.Helper()
	c, err := rpc.DialToken(context.Background(), addr, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	id := ids.NewNodeID()
	err = c.Call(context.Background(), rpc.MRegisterNode, &pb.NodeInfo{
		NodeId: id[:], Address: nodeAddr, Resources: []*pb.Resource{{Name: "CPU", Quantity: 2}},
	}, &pb.Status{})
	if err != nil {
		t.Fatal(err)
	}
	return c, id
}

func state(s *Server, addr string) string {
	for _, n := range s.Nodes() {
		if n.Address == addr {
			return n.State
		}
	}
	return "missing"
}

// waitState polls the node table until the node reaches want or the
// deadline passes, and returns how long that took.
func waitState(t *testing.T, s *Server, addr, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for state(s, addr) != want {
		if time.Since(start) > within {
			t.Fatalf("node %s: state %s, want %s within %v", addr, state(s, addr), want, within)
		}
		time.Sleep(5 * time.Millisecond) // the monitor runs on its own ticker
	}
	return time.Since(start)
}

func TestNodesJoinAndList(t *testing.T) {
	s, addr := start(t, time.Second)
	c, _ := join(t, addr, "10.0.0.1:1")
	join(t, addr, "10.0.0.2:1")
	list := &pb.NodeList{}
	if err := c.Call(context.Background(), rpc.MListNodes, &pb.Empty{}, list); err != nil {
		t.Fatal(err)
	}
	if len(list.Nodes) != 2 || list.Nodes[0].State != StateAlive || list.Nodes[0].Resources[0].Quantity != 2 {
		t.Fatalf("nodes: %v", list.Nodes)
	}
	_ = s
}

func TestSilentNodeDeclaredDead(t *testing.T) {
	const timeout = time.Second
	s, addr := start(t, timeout)
	c, id := join(t, addr, "node-a")
	// Heartbeats keep it alive past the timeout (at a tenth of it: a busy
	// machine may oversleep a pause several times over)...
	for i := 0; i < 15; i++ {
		_ = c.Notify(rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:]})
		time.Sleep(timeout / 10) // the pace of heartbeats is what is under test
	}
	if st := state(s, "node-a"); st != StateAlive {
		t.Fatalf("heartbeating node is %s", st)
	}
	// ...and their absence, with the connection still open, kills it.
	d := waitState(t, s, "node-a", StateDead, 3*timeout)
	t.Logf("declared dead %v after the last heartbeat (timeout %v)", d, timeout)
}

func TestClosedConnectionMeansDead(t *testing.T) {
	s, addr := start(t, time.Hour)
	c, _ := join(t, addr, "node-b")
	_ = c.Close()
	waitState(t, s, "node-b", StateDead, 5*time.Second)
}

func TestBadRegistrationAndToken(t *testing.T) {
	_, addr := start(t, time.Second)
	if _, err := rpc.DialToken(context.Background(), addr, "nope", nil); !errors.Is(err, rpc.ErrBadToken) {
		t.Fatalf("wrong token: %v", err)
	}
	c, err := rpc.DialToken(context.Background(), addr, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Call(context.Background(), rpc.MRegisterNode, &pb.NodeInfo{NodeId: []byte{1}}, &pb.Status{})
	if err == nil {
		t.Fatal("a node without ID and address was registered")
	}
}

// The control store pushes its view to every node when a node joins or
// dies, without waiting for their heartbeats.
func TestViewPushedOnJoinAndDeath(t *testing.T) {
	_, addr := start(t, time.Hour)
	views := make(chan *pb.ClusterView, 16)
	watcher, err := rpc.DialToken(context.Background(), addr, "tok", rpc.HandlerFunc(func(_ *rpc.Conn, m rpc.Method, k rpc.Kind, _ uint64, body []byte) {
		v := &pb.ClusterView{}
		if m == rpc.MPublishView && k == rpc.KindNotify && proto.Unmarshal(body, v) == nil {
			views <- v
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	registerNode(t, watcher, ids.NewNodeID(), "watcher")
	other, _ := join(t, addr, "other")
	// wait reads pushed views until one shows node "other" in state want.
	wait := func(want string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case v := <-views:
				for _, n := range v.Nodes {
					if n.Address == "other" && n.State == want {
						return
					}
				}
			case <-timeout:
				t.Fatalf("no view pushed with the other node %s", want)
			}
		}
	}
	wait(StateAlive)
	_ = other.Close()
	wait(StateDead)
}
