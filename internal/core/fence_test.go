package core

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// When this process's own raylet says its node is dead (it was fenced), a
// task in flight fails with ErrNodeFenced naming the node and the cause,
// and so does every later call; news of another node's death does not
// fence.
func TestOwnNodeFenced(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	w := newFakeWorker(t, func(*rpc.Conn, *pb.TaskSpec) *pb.TaskReply { <-stop; return nil })
	self, other := ids.NewNodeID(), ids.NewNodeID()
	rt := newTestRuntime(t, newFakeRaylet(w), Config{Node: self.Name()})
	h := submit1(t, rt, "long", TaskOptions{})
	eventually(t, "the task is pushed", func() bool { return rt.Pushed(h) })

	push := func(id ids.NodeID, reason string) { // as the raylet's rpc.NodesDead does
		rt.NodesDead(&pb.NodeList{Nodes: []*pb.NodeInfo{{NodeId: id[:], State: "DEAD", DeathReason: reason}}})
	}
	push(other, "another node")
	if rt.fenced.Load() != nil || rt.closed.Load() {
		t.Fatal("another node's death fenced this process")
	}

	waiting := make(chan error, 1)
	go func() {
		_, err := getValue(testCtx(t), rt, h)
		waiting <- err
	}()
	push(self, "no heartbeat for 5s")
	err := <-waiting
	if !errors.Is(err, ErrNodeFenced) || !errors.Is(err, ErrShutdown) {
		t.Fatalf("Get of the task in flight: %v, want ErrNodeFenced", err)
	}
	for _, want := range []string{self.Name(), "no heartbeat for 5s", "declared dead"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	te := &TaskError{Kind: KindNodeFenced}
	if !errors.Is(te, ErrNodeFenced) || ErrorType(te.Kind) != "NODE_DIED" {
		t.Errorf("a task failed by fencing: matches ErrNodeFenced %v, error type %s", errors.Is(te, ErrNodeFenced), ErrorType(te.Kind))
	}

	// Every later call is refused with the same news.
	_, err = rt.Submit(context.Background(), TaskOptions{Function: "f", Name: "after", NumReturns: 1}, nil)
	if !errors.Is(err, ErrNodeFenced) || !errors.Is(err, ErrShutdown) || !strings.Contains(err.Error(), self.Name()) {
		t.Fatalf("Submit after fencing: %v, want ErrNodeFenced naming the node", err)
	}
	if _, err := rt.Get(testCtx(t), h); !errors.Is(err, ErrNodeFenced) {
		t.Fatalf("Get after fencing: %v, want ErrNodeFenced", err)
	}
	rt.Fence(self.Name(), "again") // idempotent
	if e := rt.fenced.Load(); e == nil || e.Reason != "no heartbeat for 5s" {
		t.Fatalf("fenced a second time: %v", e)
	}
}
