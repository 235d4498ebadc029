package node

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// slowControlStore answers registrations after delay (never, when delay
// is negative), and counts the connections that closed.
func slowControlStore(t *testing.T, delay time.Duration) (addr string, closed *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed = new(atomic.Int32)
	mx := rpc.NewMux("gcs")
	rpc.HandleAsync(mx, rpc.RegisterNode, func(_ context.Context, _ *pb.NodeInfo, reply func(*pb.Status, error)) {
		if delay >= 0 {
			time.AfterFunc(delay, func() { reply(&pb.Status{}, nil) })
		}
	})
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return mx }, func(*rpc.Conn, error) { closed.Add(1) })
	srv.RequireToken("tok")
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), closed
}

func testClient(addr string) *gcsClient {
	id := ids.NewNodeID()
	return &gcsClient{addr: addr, token: "tok", register: func() *pb.NodeInfo { return &pb.NodeInfo{NodeId: id[:], Address: "127.0.0.1:1"} }}
}

// TestReconnectWaitsForASlowControlStore: a control store that takes a
// second to answer a registration (loading its tables on a busy machine)
// gets the node back on the connection it registered on; the node does
// not close it, which would tell the control store the node died.
func TestReconnectWaitsForASlowControlStore(t *testing.T) {
	addr, closed := slowControlStore(t, time.Second)
	g := testClient(addr)
	defer g.close()
	if err := g.reconnect(make(chan struct{}), time.Minute); err != nil {
		t.Fatalf("reconnect to a slow control store: %v", err)
	}
	if g.current() == nil || closed.Load() != 0 {
		t.Fatalf("after the registration: connection %v, %d closed", g.current(), closed.Load())
	}
}

// TestReconnectStops: a node that stops while its registration waits
// gives up at once.
func TestReconnectStops(t *testing.T) {
	addr, _ := slowControlStore(t, -1)
	g := testClient(addr)
	defer g.close()
	stop := make(chan struct{})
	time.AfterFunc(100*time.Millisecond, func() { close(stop) })
	start := time.Now()
	err := g.reconnect(stop, time.Minute)
	if err == nil || time.Since(start) > registerTimeout/2 {
		t.Fatalf("reconnect stopped: %v after %v", err, time.Since(start))
	}
}

// TestReconnectWithinItsTimeout: what is left of the node's reconnect
// timeout bounds a registration that gets no answer.
func TestReconnectWithinItsTimeout(t *testing.T) {
	addr, _ := slowControlStore(t, -1)
	g := testClient(addr)
	defer g.close()
	start := time.Now()
	err := g.reconnect(make(chan struct{}), 300*time.Millisecond)
	if err == nil || time.Since(start) > registerTimeout/2 {
		t.Fatalf("reconnect within 300 ms: %v after %v", err, time.Since(start))
	}
}
