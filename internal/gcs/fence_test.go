package gcs

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// A node that went silent past the health timeout is fenced: its next
// heartbeat and its registration under the same ID are refused with an
// error that says which node, when and why; it may join as a new node.
// Its resources and demand leave the totals.
func TestDeadNodeFenced(t *testing.T) {
	const timeout = 200 * time.Millisecond
	s, addr := start(t, timeout)
	c, id := join(t, addr, "node-f")
	hb := &pb.Heartbeat{NodeId: id[:], Available: []*pb.Resource{{Name: "CPU", Quantity: 0}},
		Pending: []*pb.Resource{{Name: "CPU", Quantity: 3}}}
	if err := c.Call(context.Background(), rpc.MHeartbeat, hb, &pb.ClusterView{}); err != nil {
		t.Fatalf("heartbeat of a live node: %v", err)
	}
	before := time.Now()
	waitState(t, s, "node-f", StateDead, 10*timeout)

	err := c.Call(context.Background(), rpc.MHeartbeat, hb, &pb.ClusterView{})
	if !IsFenced(err) {
		t.Fatalf("heartbeat after death: %v, want the fencing error", err)
	}
	var re *rpc.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("heartbeat after death: %T, want an rpc.RemoteError", err)
	}
	for _, want := range []string{id.Name(), fencedMarker, "no heartbeat for 200ms", "new node", "last heard from at"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("fencing error %q does not say %q", err, want)
		}
	}
	// It says when: a time between the last heartbeat and now.
	at := s.deaths.when(id)
	if at.Before(before) || at.After(time.Now()) || !strings.Contains(err.Error(), at.UTC().Format(time.RFC3339Nano)) {
		t.Errorf("fencing error %q: death recorded at %v", err, at)
	}

	err = c.Call(context.Background(), rpc.MRegisterNode, &pb.NodeInfo{NodeId: id[:], Address: "node-f",
		Resources: []*pb.Resource{{Name: "CPU", Quantity: 2}}}, &pb.Status{})
	if !IsFenced(err) {
		t.Fatalf("registration under the dead ID: %v, want the fencing error", err)
	}

	// Anything else on its connection is refused too, and what it would
	// change is not.
	err = c.Call(context.Background(), rpc.MKVPut, &pb.KVEntry{Namespace: "n", Key: "k", Value: []byte("v")}, &pb.KVReply{})
	if !IsFenced(err) {
		t.Fatalf("KV put from the dead node's connection: %v, want the fencing error", err)
	}
	other, err := rpc.DialToken(context.Background(), addr, "tok", nil) // a client, not a node: it needs no heartbeat
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got := &pb.KVReply{}
	if err := other.Call(context.Background(), rpc.MKVGet, &pb.KVEntry{Namespace: "n", Key: "k"}, got); err != nil || len(got.Value) != 0 {
		t.Fatalf("the fenced node's put took effect: %v %v", got, err)
	}

	// Dead, its CPUs are neither free nor used, and its demand is gone.
	for _, n := range s.Nodes() {
		if n.Address == "node-f" && (n.State != StateDead || len(n.Available) != 0 || len(n.Pending) != 0) {
			t.Fatalf("dead node's record: %v", n)
		}
	}

	// The same process under a new ID is a new node.
	c2, id2 := join(t, addr, "node-f2")
	if id2 == id || state(s, "node-f2") != StateAlive {
		t.Fatalf("a new node could not join: %s", state(s, "node-f2"))
	}
	if err := c2.Call(context.Background(), rpc.MHeartbeat, &pb.Heartbeat{NodeId: id2[:]}, &pb.ClusterView{}); err != nil {
		t.Fatalf("heartbeat of the new node: %v", err)
	}
}

// Errors that are not the control store's refusal are not fencing.
func TestIsFenced(t *testing.T) {
	id := ids.NewNodeID()
	fe := &FencedError{Node: id.Name(), Reason: "why"}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fe, true},
		{&rpc.RemoteError{Msg: fe.Error()}, true},
		{errors.Join(errors.New("register"), &rpc.RemoteError{Msg: fe.Error()}), true},
		{&rpc.RemoteError{Msg: "gcs: something else"}, false},
		{rpc.ErrClosed, false},
		{nil, false},
	} {
		if got := IsFenced(c.err); got != c.want {
			t.Errorf("IsFenced(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if !errors.Is(fe, ErrNodeDead) {
		t.Error("a FencedError does not match ErrNodeDead")
	}
}

// A control store that stood still (paused) past the health timeout does
// not declare its nodes dead for the silence it caused: it restarts their
// clocks. A node that stays silent after that is still declared dead.
func TestStalledControlStoreFencesNobody(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Serve(ln, Config{Token: "tok", HealthTimeout: timeout, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	join(t, "tcp:"+ln.Addr().String(), "node-s")
	// swept waits until the monitor has swept at the clock's time.
	swept := func() {
		t.Helper()
		want := now().UnixMilli()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.mu.Lock()
			last := s.deaths.lastSweep
			s.mu.Unlock()
			if last >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the monitor did not sweep")
			}
			time.Sleep(5 * time.Millisecond) // the monitor runs on its own ticker
		}
	}
	swept()
	advance(10 * timeout) // the control store stood still for 2 s
	swept()
	if st := state(s, "node-s"); st != StateAlive {
		t.Fatalf("after the control store's own stall the node is %s", st)
	}
	// Time going on at its pace, the silent node dies.
	for i := 0; i < 8 && state(s, "node-s") == StateAlive; i++ {
		advance(timeout / 4)
		swept()
	}
	if st := state(s, "node-s"); st != StateDead {
		t.Fatalf("a node silent for 2x the timeout after the stall is %s", st)
	}
}
