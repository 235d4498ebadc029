package gcs

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// bundleNode is a node that takes every bundle operation and counts them.
func bundleNode(t *testing.T, addr string, id ids.NodeID, ops *atomic.Int32) *rpc.Conn {
	t.Helper()
	c, err := rpc.DialToken(context.Background(), addr, "tok", rpc.HandlerFunc(func(c *rpc.Conn, m rpc.Method, k rpc.Kind, rid uint64, body []byte) {
		if m == rpc.MBundles && k == rpc.KindRequest && proto.Unmarshal(body, &pb.BundleOp{}) == nil {
			ops.Add(1)
			_ = c.Reply(rid, &pb.Status{})
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	registerNode(t, c, id, "node-"+id.Name())
	return c
}

func groupCall(t *testing.T, c *rpc.Conn, req *pb.PlacementGroupRequest) *pb.PlacementGroup {
	t.Helper()
	r := &pb.PlacementGroupReply{}
	call(t, c, rpc.MPlacementGroup, req, r)
	if r.Error != "" || len(r.Groups) != 1 {
		t.Fatalf("%s: %q, %d groups", req.Op, r.Error, len(r.Groups))
	}
	return r.Groups[0]
}

// A control store restarted on its store keeps its placement groups where
// they were, without reserving them again.
func TestPlacementGroupsSurviveARestart(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		s, addr := serve(t, storage())
		var ops atomic.Int32
		id := ids.NewNodeID()
		c := bundleNode(t, addr, id, &ops)
		spec := &pb.PlacementGroup{Name: "kept", Detached: true, Strategy: placement.StrictPack,
			Bundles: []*pb.Bundle{{Resources: []*pb.Resource{{Name: "CPU", Quantity: 1}}}}}
		g := groupCall(t, c, &pb.PlacementGroupRequest{Op: placement.OpCreate, Group: spec})
		g = groupCall(t, c, &pb.PlacementGroupRequest{Op: placement.OpWait, PlacementGroupId: g.PlacementGroupId, TimeoutMs: 10_000})
		if g.State != placement.StateCreated || string(g.Bundles[0].NodeId) != string(id[:]) {
			t.Fatalf("created: %v", g)
		}
		if n := ops.Load(); n != 1 {
			t.Fatalf("%d bundle operations, want one (a group on one node is reserved in one step)", n)
		}
		// The node's resources in the cluster view show the bundle at once.
		nodes := &pb.NodeList{}
		call(t, c, rpc.MListNodes, &pb.Empty{}, nodes)
		group := fmt.Sprintf("%x", g.PlacementGroupId)
		total := placement.ResourceMap(nodes.Nodes[0].Resources)
		if total[placement.Resource("CPU", group, 0)] != 1 || total["CPU"] != 2 {
			t.Fatalf("the node's resources after the commit: %v", total)
		}
		_ = s.Close()
		_ = c.Close()

		_, addr2 := serve(t, storage())
		c2 := bundleNode(t, addr2, id, &ops)
		got := groupCall(t, c2, &pb.PlacementGroupRequest{Op: placement.OpGet, Name: "kept"})
		if got.State != placement.StateCreated || string(got.Bundles[0].NodeId) != string(id[:]) || !got.Detached {
			t.Fatalf("after the restart: %v", got)
		}
		// Removing it releases the bundle on its node; the store forgets it.
		r := &pb.PlacementGroupReply{}
		call(t, c2, rpc.MPlacementGroup, &pb.PlacementGroupRequest{Op: placement.OpRemove, PlacementGroupId: got.PlacementGroupId}, r)
		deadline := time.Now().Add(10 * time.Second)
		for ops.Load() != 2 {
			if time.Now().After(deadline) {
				t.Fatalf("%d bundle operations after the removal, want 2", ops.Load())
			}
			time.Sleep(5 * time.Millisecond) // the manager releases on its own goroutine
		}
		cfg := storage()
		st := cfg.Store
		if st == nil {
			var err error
			if st, err = DialRedis(context.Background(), cfg.RedisAddress, "", DefaultRedisPrefix); err != nil {
				t.Fatal(err)
			}
			defer st.Close()
		}
		recs, err := st.List(context.Background(), TablePlacementGroups)
		if err != nil || len(recs) != 0 {
			t.Fatalf("the store still has %d groups (%v)", len(recs), err)
		}
	})
}

func TestPlacementGroupRequestErrors(t *testing.T) {
	_, addr := start(t, time.Hour)
	c := dial(t, addr)
	for name, req := range map[string]*pb.PlacementGroupRequest{
		"unknown op":     {Op: "EXPLODE"},
		"no bundles":     {Op: placement.OpCreate, Group: &pb.PlacementGroup{}},
		"unknown group":  {Op: placement.OpWait, PlacementGroupId: []byte{1, 2}},
		"unknown name":   {Op: placement.OpGet, Name: "nobody"},
		"remove unknown": {Op: placement.OpRemove, PlacementGroupId: []byte{3}},
	} {
		r := &pb.PlacementGroupReply{}
		call(t, c, rpc.MPlacementGroup, req, r)
		if r.Error == "" {
			t.Errorf("%s: no error", name)
		}
	}
	// A malformed request is refused, not served.
	rc := dialRaw(t, addr)
	if kind, body := rc.request(t, rpc.MPlacementGroup, 7, []byte{0xff, 0xff, 0xff}); kind != rpc.KindError || len(body) == 0 {
		t.Fatalf("malformed request: kind %v, %q", kind, body)
	}
}
