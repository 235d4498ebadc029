package gcs

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// waitWriteBacks waits until s has written its state back n times.
func waitWriteBacks(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.WriteBacks() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d write-backs within 20s, want %d", s.WriteBacks(), n)
		}
		time.Sleep(20 * time.Millisecond) // polling the guard's ticks
	}
}

// After Redis restarts empty, the control store writes its whole state
// back: a control store started next on that Redis finds the nodes, jobs
// and executables, named detached actors, KV entries, placement groups and
// the head's CA record, as before the loss.
func TestWriteBackAfterRedisLosesData(t *testing.T) {
	redis := redistest.StartServer(t)
	s1, addr1 := serve(t, Config{RedisAddress: redis.Addr})
	var ops atomic.Int32
	nodeID := ids.NewNodeID()
	c1 := bundleNode(t, addr1, nodeID, &ops)
	exe, g := fillBeforeLoss(t, c1, nodeID)
	// The head's CA, written next to the tables by internal/node.
	ctx := context.Background()
	other, err := DialRedis(ctx, redis.Addr, "", DefaultRedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Put(ctx, "tls", "ca", []byte("the CA")); err != nil {
		t.Fatal(err)
	}
	waitCACopied(t, s1)
	if n := s1.WriteBacks(); n != 0 {
		t.Fatalf("%d write-backs while Redis kept its data", n)
	}

	redis.Restart(t) // empty now
	waitWriteBacks(t, s1, 1)
	// A record deleted after the loss stays deleted.
	kv := &pb.KVReply{}
	call(t, c1, rpc.MKVPut, &pb.KVEntry{Namespace: "ns", Key: "b", Value: []byte("2")}, kv)
	call(t, c1, rpc.MKVDel, &pb.KVEntry{Namespace: "ns", Key: "b"}, kv)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, addr2 := serve(t, Config{RedisAddress: redis.Addr})
	checkStateAfterLoss(t, s2, addr2, nodeID, exe, g.PlacementGroupId)
	if b, found, err := other.Get(ctx, "tls", "ca"); err != nil || !found || string(b) != "the CA" {
		t.Fatalf("the CA record after the loss: %q, %v, %v", b, found, err)
	}
	if n := s2.WriteBacks(); n != 0 {
		t.Fatalf("the new control store wrote back %d times on an intact Redis", n)
	}
}

// fillBeforeLoss gives the control store, through c1, a job of node nodeID
// with its executable, a KV entry, a named detached actor and a detached
// placement group. It returns the executable and the group.
func fillBeforeLoss(t *testing.T, c1 *rpc.Conn, nodeID ids.NodeID) ([]byte, *pb.PlacementGroup) {
	t.Helper()
	exe := randomBytes(t, 100_000)
	startJobWithExe(t, c1, nodeID, exe, nil)
	kv := &pb.KVReply{}
	call(t, c1, rpc.MKVPut, &pb.KVEntry{Namespace: "ns", Key: "a", Value: []byte("1")}, kv)
	nr := &pb.ActorNameReply{}
	call(t, c1, rpc.MRegisterActorName, &pb.ActorName{Name: "keeper", Namespace: "app", ActorId: []byte("actor-1"), Class: "Keeper", Detached: true}, nr)
	if nr.Error != "" {
		t.Fatal(nr.Error)
	}
	if err := c1.Notify(rpc.MReportEvents, &pb.StateEvents{Actors: []*pb.ActorEvent{alive("actor-1", "job-1", "keeper", true)}}); err != nil {
		t.Fatal(err)
	}
	waitActors(t, c1, "the detached actor listed", func(m map[string]*pb.ActorEvent) bool { return m["actor-1"] != nil })
	spec := &pb.PlacementGroup{Name: "kept", Detached: true, Strategy: placement.StrictPack,
		Bundles: []*pb.Bundle{{Resources: []*pb.Resource{{Name: "CPU", Quantity: 1}}}}}
	g := groupCall(t, c1, &pb.PlacementGroupRequest{Op: placement.OpCreate, Group: spec})
	groupCall(t, c1, &pb.PlacementGroupRequest{Op: placement.OpWait, PlacementGroupId: g.PlacementGroupId, TimeoutMs: 10_000})
	return exe, g
}

// waitCACopied waits until the guard of s1 has read the CA record while
// Redis is intact.
func waitCACopied(t *testing.T, s1 *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s1.wmu.Lock()
		got := s1.durability.foreign["tls"]["ca"]
		s1.wmu.Unlock()
		if string(got) == "the CA" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the control store did not copy the CA record")
		}
		time.Sleep(20 * time.Millisecond) // polling the guard's ticks
	}
}

// checkStateAfterLoss checks that s2, at addr2, has what fillBeforeLoss
// wrote (the executable exe, the group groupID), and not the deleted key.
func checkStateAfterLoss(t *testing.T, s2 *Server, addr2 string, nodeID ids.NodeID, exe, groupID []byte) {
	t.Helper()
	hash := sha(exe)
	if st := state(s2, "node-"+nodeID.Name()); st != StateAlive {
		t.Fatalf("node after the loss and a restart: %q", st)
	}
	if jobs := s2.Jobs(); len(jobs) != 1 || jobs[0].JobId != "job-1" || jobs[0].ExeHash != hash {
		t.Fatalf("jobs after the loss and a restart: %v", jobs)
	}
	c2 := dial(t, addr2)
	if got := download(t, c2, hash, int64(len(exe)), 64_000); !bytes.Equal(got, exe) {
		t.Fatal("the executable after the loss and a restart differs")
	}
	kv := &pb.KVReply{}
	call(t, c2, rpc.MKVGet, &pb.KVEntry{Namespace: "ns", Key: "a"}, kv)
	if !kv.Found || string(kv.Value) != "1" {
		t.Fatalf("kv after the loss and a restart: %+v", kv)
	}
	call(t, c2, rpc.MKVGet, &pb.KVEntry{Namespace: "ns", Key: "b"}, kv)
	if kv.Found {
		t.Fatalf("a deleted key came back: %+v", kv)
	}
	nr := &pb.ActorNameReply{}
	call(t, c2, rpc.MLookupActorName, &pb.ActorName{Name: "keeper", Namespace: "app"}, nr)
	if a := nr.Actor; a == nil || string(a.ActorId) != "actor-1" || !a.Detached {
		t.Fatalf("named detached actor after the loss and a restart: %v", nr)
	}
	listed := waitActors(t, c2, "the detached actor listed after the loss and a restart", func(m map[string]*pb.ActorEvent) bool { return m["actor-1"] != nil })
	if a := listed["actor-1"]; a.State != tasktable.ActorAlive {
		t.Fatalf("detached actor after the loss and a restart: %v", a)
	}
	got := groupCall(t, c2, &pb.PlacementGroupRequest{Op: placement.OpGet, PlacementGroupId: groupID})
	if got.State != placement.StateCreated || got.Name != "kept" {
		t.Fatalf("placement group after the loss and a restart: %v", got)
	}
}

// Writes that fail while Redis is down make the store not intact: once
// it answers again, with its data or without, the state is written back.
func TestRedisIntact(t *testing.T) {
	redis := redistest.StartServer(t)
	ctx := context.Background()
	st, err := DialRedis(ctx, redis.Addr, "", "t:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ok, err := st.Intact(ctx); ok || err != nil {
		t.Fatalf("Intact before any Mark = %v, %v; want false", ok, err)
	}
	if err := st.Mark(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Intact(ctx); !ok || err != nil {
		t.Fatalf("Intact after Mark = %v, %v", ok, err)
	}
	redis.Restart(t)
	// The first command after the restart may meet a stale connection.
	ok, err := st.Intact(ctx)
	if ok {
		t.Fatal("Intact after Redis restarted empty")
	}
	if err != nil {
		if ok, err = st.Intact(ctx); ok || err != nil {
			t.Fatalf("Intact after Redis restarted empty = %v, %v", ok, err)
		}
	}
	if err := st.Mark(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "x", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Intact(ctx); !ok || err != nil {
		t.Fatalf("Intact after a good write = %v, %v", ok, err)
	}
	// A write that fails makes it not intact at the next check, though
	// the marker is still there.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.Put(cctx, "x", "k2", []byte("v")); err == nil {
		t.Fatal("a write with a cancelled context did not fail")
	}
	if ok, err := st.Intact(ctx); ok || err != nil {
		t.Fatalf("Intact after a failed write = %v, %v; want false", ok, err)
	}
	if ok, err := st.Intact(ctx); !ok || err != nil {
		t.Fatalf("Intact asked again = %v, %v; want true", ok, err)
	}
}
