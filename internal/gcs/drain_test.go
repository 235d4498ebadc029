package gcs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// TestDrainNode: a drained node is DRAINING with its deadline, in the
// listing and in the view its own raylet gets; when its connection closes
// it is DEAD as drained. Bad requests are refused with clear errors.
func TestDrainNode(t *testing.T) {
	s, addr := serve(t, Config{})
	head, worker := dial(t, addr), dial(t, addr)
	headID, workerID := ids.NewNodeID(), ids.NewNodeID()
	call(t, head, rpc.MRegisterNode, &pb.NodeInfo{NodeId: headID[:], Address: "h:1", Head: true}, &pb.Status{})
	registerNode(t, worker, workerID, "w:1")

	drain := func(id []byte, ms int64) (*pb.NodeInfo, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec := &pb.NodeInfo{}
		err := head.Call(ctx, rpc.MDrainNode, &pb.DrainNode{NodeId: id, DeadlineMs: ms}, rec)
		return rec, err
	}
	unknown := ids.NewNodeID()
	for _, bad := range []struct {
		id   []byte
		ms   int64
		want string
	}{
		{unknown[:], 0, "no such node"},
		{[]byte{1, 2}, 0, "no such node"},
		{headID[:], 0, "draining the head node is not supported"},
		{workerID[:], -1, "must not be negative"},
	} {
		if _, err := drain(bad.id, bad.ms); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("drain %x (%d ms): got %v, want %q", bad.id, bad.ms, err, bad.want)
		}
	}

	before := time.Now()
	rec, err := drain(workerID[:], 60_000)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != StateDraining || rec.DrainDeadlineUnixMs < before.Add(59*time.Second).UnixMilli() {
		t.Fatalf("drained record: state %s, deadline %v", rec.State, time.UnixMilli(rec.DrainDeadlineUnixMs))
	}
	if _, err := drain(workerID[:], 0); err == nil || !strings.Contains(err.Error(), "already draining") {
		t.Fatalf("second drain: %v", err)
	}
	view := &pb.ClusterView{}
	call(t, worker, rpc.MHeartbeat, &pb.Heartbeat{NodeId: workerID[:]}, view)
	found := false
	for _, n := range view.Nodes {
		found = found || (string(n.NodeId) == string(workerID[:]) && n.State == StateDraining)
	}
	if !found {
		t.Fatalf("the view does not show the node DRAINING: %v", view.Nodes)
	}

	// Its last heartbeat says what became of its objects: the death
	// reason says it too.
	const note = "2 object(s) (20.0 MiB) moved to other nodes"
	call(t, worker, rpc.MHeartbeat, &pb.Heartbeat{NodeId: workerID[:], DrainNote: note}, &pb.ClusterView{})
	_ = worker.Close() // the drained node exits
	var n *pb.NodeInfo
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling the server's state
		for _, x := range s.Nodes() {
			if string(x.NodeId) == string(workerID[:]) {
				n = x
			}
		}
		if n.State == StateDead {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the drained node is %s, not DEAD", n.State)
		}
	}
	if want := DrainedReason + "; " + note; n.DeathReason != want {
		t.Fatalf("death reason %q, want %q", n.DeathReason, want)
	}
	if _, err := drain(workerID[:], 0); err == nil || !strings.Contains(err.Error(), "dead") {
		t.Fatalf("draining a dead node: %v", err)
	}
}
