package raylet

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore/spill"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// fakeOwner plays the owner of objects: it serves ObjectsMoved over TCP
// with the job credential a raylet presents, records what it was told,
// and says it no longer holds the objects in gone.
type fakeOwner struct {
	ep   string
	mu   sync.Mutex
	told []*pb.ObjectsMoved
	gone map[ids.ObjectID]bool
}

func newFakeOwner(t testing.TB, token string) *fakeOwner {
	t.Helper()
	o := &fakeOwner{gone: make(map[ids.ObjectID]bool)}
	mx := rpc.NewMux("fake owner")
	rpc.Handle(mx, rpc.ObjectsMoved, func(_ context.Context, req *pb.ObjectsMoved) (*pb.ObjectIDs, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.told = append(o.told, req)
		rep := &pb.ObjectIDs{}
		for _, b := range req.Ids {
			if id, err := ids.ObjectIDFrom(b); err == nil && o.gone[id] {
				rep.Ids = append(rep.Ids, b)
			}
		}
		return rep, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return mx }, nil)
	srv.RequireToken(pki.JobCredential(token, ""))
	t.Cleanup(func() { _ = srv.Close() })
	o.ep = rpc.Endpoint("/nonexistent/owner.sock", ln.Addr().String(), "owner-node")
	return o
}

// putOwned creates, fills and seals an object of size bytes in r's store
// for owner, as a worker does.
func putOwned(t testing.TB, r *Raylet, size int64, seed byte, owner string) ids.ObjectID {
	t.Helper()
	id := ids.ForPut()
	off, err := r.CreateObject(context.Background(), id, size, owner)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.arena.Slice(off, size)
	if err != nil {
		t.Fatal(err)
	}
	fill(b, seed)
	r.SealObjects([]ids.ObjectID{id})
	return id
}

// peersOf makes others the live nodes a's cluster view shows.
func peersOf(a *Raylet, others ...*Raylet) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.peers = nil
	for _, o := range others {
		a.peers = append(a.peers, &peerNode{name: o.NodeName(), addr: o.TCPAddr()})
	}
}

// A drained node's hand-over: every primary copy it holds, in memory or
// spilled, goes to the other node, which keeps it as a primary copy of
// its own; the owner is told where each went, and the copies it no longer
// holds are freed there. A hand-over whose deadline has passed moves
// nothing and says why for each object.
func TestHandOverMovesPrimaries(t *testing.T) {
	const token = "t"
	a := startNode(t, 16<<20, token)
	b := startNode(t, 16<<20, token)
	owner := newFakeOwner(t, token)
	keep := []ids.ObjectID{putOwned(t, a, 2<<20+3, 1, owner.ep), putOwned(t, a, 100<<10, 2, owner.ep)}
	dropped := putOwned(t, a, 1<<20, 3, owner.ep)
	owner.gone[dropped] = true
	local := putOwned(t, a, 1<<20, 4, rpc.Endpoint("/x.sock", "127.0.0.1:9", a.NodeName())) // its owner goes with the node
	orphan := putOwned(t, a, 1<<20, 6, rpc.Endpoint("/x.sock", "127.0.0.1:1", "gone-node")) // its owner cannot be reached
	// One of them spilled: on a's disk only.
	keep = append(keep, putSpilledOnly(t, a, owner.ep))

	// No other node: nothing can move.
	res := a.handOver(time.Now().Add(time.Minute), nil)
	if res.moved != 0 || len(res.failed) != 5 || !strings.Contains(res.failed[keep[0]], "no other live node") {
		t.Fatalf("hand-over with no other node: %+v", res)
	}
	peersOf(a, b)
	res = a.handOver(time.Now().Add(-time.Second), nil)
	if res.moved != 0 || len(res.failed) != 5 || !strings.Contains(res.failed[keep[0]], "deadline passed") {
		t.Fatalf("hand-over past its deadline: %+v", res)
	}
	if note := res.note(); !strings.Contains(note, "5 object(s) could not be moved") {
		t.Fatalf("note of a hand-over past its deadline: %q", note)
	}

	res = a.handOver(time.Now().Add(time.Minute), nil)
	if res.moved != len(keep) || len(res.failed) != 1 || res.local != 1 || !strings.Contains(res.failed[orphan], "owner could not be told") {
		t.Fatalf("hand-over: %+v", res)
	}
	checkTaken(t, a, b, keep, owner.ep)
	if _, _, ok := b.store.Lookup(local); ok {
		t.Fatal("an object whose owner goes with the node was moved")
	}
	for _, id := range []ids.ObjectID{dropped, orphan} {
		waitUntil(t, "the objects no owner holds freed where they went", func() bool {
			_, _, ok := b.store.Lookup(id)
			return !ok
		})
	}
	checkOwnerTold(t, owner, a, b, len(keep)+1)
	// A second pass (the drain's, once the work ended) skips what the
	// first moved or its owner dropped, and tries the rest again.
	later := putOwned(t, a, 1<<20, 7, owner.ep)
	again := a.handOver(time.Now().Add(time.Minute), res.done)
	if again.moved != 1 || len(again.failed) != 1 || again.failed[orphan] == "" {
		t.Fatalf("second pass: %+v", again)
	}
	if !bytes.Equal(objectBytes(t, b, later), objectBytes(t, a, later)) {
		t.Fatal("the object made after the first pass differs where it went")
	}
	res = res.add(again)
	if note := res.note(); !strings.HasPrefix(note, "4 object(s) (") || !strings.Contains(note, "moved to other nodes; 1 object(s) could not be moved") {
		t.Fatalf("note: %q", note)
	}
}

// putSpilledOnly puts an object of owner in a's store, spills it and
// deletes it from memory, so that it is on a's disk only.
func putSpilledOnly(t *testing.T, a *Raylet, owner string) ids.ObjectID {
	t.Helper()
	spilled := putOwned(t, a, 1<<20, 5, owner)
	if err := a.spill.disk.Spill(context.Background(), spillList(t, a, spilled)); err != nil {
		t.Fatal(err)
	}
	a.spill.mu.Lock()
	if e := a.spill.elems[spilled]; e != nil {
		a.spill.lru.Remove(e)
		delete(a.spill.elems, spilled)
	}
	a.spill.mu.Unlock()
	_, _ = a.store.Delete(spilled)
	return spilled
}

// checkTaken checks that b holds each of keep as a's copy, as a primary
// copy of its own, and records owner as its owner.
func checkTaken(t *testing.T, a, b *Raylet, keep []ids.ObjectID, owner string) {
	t.Helper()
	for _, id := range keep {
		if !bytes.Equal(objectBytes(t, b, id), sourceBytes(t, a, id)) {
			t.Fatalf("object %s differs on the node that took it", id)
		}
		if b.xfer.IsPulled(id) {
			t.Fatalf("object %s is a pulled (evictable) copy on the node that took it, not a primary", id)
		}
		if o, ok := b.owners.get(id); !ok || o.addr != owner {
			t.Fatalf("the node that took %s records its owner as %q", id, o.addr)
		}
	}
}

// checkOwnerTold checks that owner was told only of moves from a to b, of
// want objects in all.
func checkOwnerTold(t *testing.T, owner *fakeOwner, a, b *Raylet, want int) {
	t.Helper()
	owner.mu.Lock()
	told := append([]*pb.ObjectsMoved(nil), owner.told...)
	owner.mu.Unlock()
	n := 0
	for _, m := range told {
		if m.From != a.TCPAddr() || m.To != b.TCPAddr() {
			t.Fatalf("the owner was told of a move from %s to %s", m.From, m.To)
		}
		n += len(m.Ids)
	}
	if n != want {
		t.Fatalf("the owner was told of %d objects, want %d", n, want)
	}
}

// A hand-over's plan: an object whose owner this node never learned
// cannot be moved and says so, one whose owner is on this node goes with
// it, one in skip is left alone, and the others are to move to the peers
// the node knows of.
func TestHandOverPlan(t *testing.T) {
	const token = "t"
	a := startNode(t, 16<<20, token)
	b := startNode(t, 16<<20, token)
	owner := newFakeOwner(t, token)
	unknown := putOwned(t, a, 1<<10, 1, "") // no owner given: none recorded
	local := putOwned(t, a, 1<<10, 2, rpc.Endpoint("/x.sock", "127.0.0.1:9", a.NodeName()))
	skipped := putOwned(t, a, 1<<10, 3, owner.ep)
	moving := putOwned(t, a, 1<<10, 4, owner.ep)
	peersOf(a, b)

	res := handOverResult{failed: make(map[ids.ObjectID]string), done: make(map[ids.ObjectID]bool)}
	todo, targets := a.handOverPlan(map[ids.ObjectID]bool{skipped: true}, &res)
	if len(todo) != 1 || todo[0].id != moving || todo[0].size != 1<<10 || todo[0].owner.addr != owner.ep {
		t.Fatalf("to move: %+v, want only %s of %s", todo, moving, owner.ep)
	}
	if len(targets) != 1 || targets[0] != b.TCPAddr() {
		t.Fatalf("targets %v, want [%s]", targets, b.TCPAddr())
	}
	if res.local != 1 || len(res.failed) != 1 || res.failed[unknown] != "its owner is not known here" {
		t.Fatalf("plan: local %d, failed %v", res.local, res.failed)
	}
	if _, ok := res.failed[local]; ok {
		t.Fatal("an object whose owner goes with the node is counted failed")
	}

	// The whole hand-over says the same of the object whose owner is
	// unknown, and leaves it here.
	all := a.handOver(time.Now().Add(time.Minute), map[ids.ObjectID]bool{skipped: true})
	if all.moved != 1 || all.local != 1 || all.failed[unknown] != "its owner is not known here" || !all.done[moving] {
		t.Fatalf("hand-over: %+v", all)
	}
	if _, _, ok := b.store.Lookup(unknown); ok {
		t.Fatal("an object of unknown owner was moved")
	}
	if _, _, ok := b.store.Lookup(skipped); ok {
		t.Fatal("an object in skip was moved")
	}
}

// spillList is the spill engine's description of object id of r.
func spillList(t *testing.T, r *Raylet, id ids.ObjectID) []spill.Object {
	t.Helper()
	off, size, ok := r.store.Lookup(id)
	if !ok {
		t.Fatalf("%s not in the store", id)
	}
	b, err := r.arena.View(off, size)
	if err != nil {
		t.Fatal(err)
	}
	return []spill.Object{{ID: id, Data: b}}
}

// sourceBytes reads object id of r, in memory or spilled.
func sourceBytes(t *testing.T, r *Raylet, id ids.ObjectID) []byte {
	t.Helper()
	if _, _, ok := r.store.Lookup(id); ok {
		return objectBytes(t, r, id)
	}
	size, ok := r.spill.disk.Has(id)
	if !ok {
		t.Fatalf("%s is neither in memory nor spilled", id)
	}
	b := make([]byte, size)
	if _, err := r.spill.disk.ReadAt(id, b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TakeObject refuses bad requests with clear errors, and a draining node
// takes nothing.
func TestTakeObjectBadRequests(t *testing.T) {
	const token = "t"
	a := startNode(t, 16<<20, token)
	b := startNode(t, 16<<20, token)
	id := putOwned(t, a, 1<<20, 1, "")
	ctx := context.Background()
	c, err := rpc.DialToken(ctx, "tcp:"+b.TCPAddr(), token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	take := func(req *pb.PullObject) error {
		rep := &pb.CreateObjectReply{}
		if err := c.Call(ctx, rpc.MTakeObject, req, rep); err != nil {
			return err
		}
		if rep.Error != "" {
			return errString(rep.Error)
		}
		return nil
	}
	for _, tc := range []struct {
		name string
		req  *pb.PullObject
		want string
	}{
		{"malformed id", &pb.PullObject{ObjectId: []byte("x"), From: a.TCPAddr(), Size: 1}, "identifier"},
		{"no source", &pb.PullObject{ObjectId: id[:], Size: 1 << 20}, "no source"},
		{"negative size", &pb.PullObject{ObjectId: id[:], From: a.TCPAddr(), Size: -1}, "negative size"},
		{"not at the source", &pb.PullObject{ObjectId: func() []byte { x := ids.ForPut(); return x[:] }(), From: a.TCPAddr(), Size: 10}, "not here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := take(tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("TakeObject = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	b.mu.Lock()
	b.draining = true
	b.mu.Unlock()
	if err := take(&pb.PullObject{ObjectId: id[:], From: a.TCPAddr(), Size: 1 << 20}); err == nil || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("TakeObject on a draining node = %v", err)
	}
	// A job's credential may not hand objects over.
	jc, err := rpc.DialToken(ctx, "tcp:"+b.TCPAddr(), pki.JobCredential(token, "j"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	if err := jc.Call(ctx, rpc.MTakeObject, &pb.PullObject{ObjectId: id[:], From: a.TCPAddr(), Size: 1 << 20}, &pb.CreateObjectReply{}); err == nil || !strings.Contains(err.Error(), "cluster's own methods") {
		t.Fatalf("TakeObject with a job's credential = %v", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// BenchmarkHandOver hands 128 MiB in 4 MiB objects over from one raylet to
// another (the copies taken are freed after each round) and reports the
// rate next to the loopback TCP floor measured in the same run.
func BenchmarkHandOver(bm *testing.B) {
	const n, size = 32, 4 << 20
	const token = "t"
	a := startNode(bm, n*size+n*size/4, token)
	b := startNode(bm, n*size+n*size/4, token)
	owner := newFakeOwner(bm, token)
	list := make([]ids.ObjectID, n)
	for i := range list {
		list[i] = putOwned(bm, a, size, byte(i), owner.ep)
	}
	peersOf(a, b)
	bm.SetBytes(n * size)
	bm.ResetTimer()
	var busy time.Duration
	for i := 0; i < bm.N; i++ {
		start := time.Now()
		if res := a.handOver(time.Now().Add(time.Minute), nil); res.moved != n {
			bm.Fatalf("hand-over: %+v", res)
		}
		busy += time.Since(start)
		b.FreeObjects(list)
	}
	bm.StopTimer()
	rate := float64(n*size) * float64(bm.N) / busy.Seconds() / 1e9
	floor := loopbackFloor(bm, 1<<30)
	bm.ReportMetric(rate, "handover-GB/s")
	bm.ReportMetric(floor, "floor-GB/s")
	bm.ReportMetric(rate/floor, "handover/floor")
}
