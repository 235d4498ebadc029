package core

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// storedReply answers a task with each return value in the node's store
// (at a made-up place: only the locator matters to the owner).
func storedReply(node string) func(*rpc.Conn, *pb.TaskSpec) *pb.TaskReply {
	return func(_ *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		r := &pb.TaskReply{TaskId: spec.TaskId}
		for i := 0; i < int(spec.NumReturns); i++ {
			r.Returns = append(r.Returns, &pb.Locator{InStore: true, Size: 8, Offset: int64(spec.Attempt), NodeAddr: node})
		}
		return r
	}
}

// An owned object lives while a handle holds it, and its store copy is
// freed when the last one lets go.
func TestObjectFreedWithLastHandle(t *testing.T) {
	w := newFakeWorker(t, storedReply(""))
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	ctx := testCtx(t)
	h := submit1(t, rt, "t", TaskOptions{})
	if _, err := rt.Get(ctx, h); err != nil {
		t.Fatal(err)
	}
	h2 := rt.HandleFor(h.ID, rt.Addr()) // a second handle, as a ref decoded from a value
	h.Release()
	if rt.Stats().Objects != 1 || rl.wasFreed(h.ID) {
		t.Fatal("the object went while a handle still held it")
	}
	h2.Release()
	if rt.Stats().Objects != 0 || !rl.wasFreed(h.ID) {
		t.Fatalf("after the last handle: Stats %+v, freed %v", rt.Stats(), rl.wasFreed(h.ID))
	}
	// A handle made for it now finds it freed.
	h3 := rt.HandleFor(h.ID, rt.Addr())
	if _, err := getValue(ctx, rt, h3); !errors.Is(err, ErrObjectFreed) {
		t.Fatalf("Get of a freed object = %v, want ErrObjectFreed", err)
	}
}

// A pending task keeps its argument alive after the caller lets go; the
// argument is freed when the task ends.
func TestTaskPinsItsArgument(t *testing.T) {
	gate := make(chan struct{})
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Name == "user" {
			<-gate
			return okReply(c, spec)
		}
		return storedReply("")(c, spec)
	})
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	ctx := testCtx(t)
	arg := submit1(t, rt, "arg", TaskOptions{})
	user := submit1(t, rt, "user", TaskOptions{}, Arg{Ref: arg})
	eventually(t, "user is pushed", func() bool { return rt.Pushed(user) })
	arg.Release()
	if rl.wasFreed(arg.ID) {
		t.Fatal("the argument was freed under its running task")
	}
	close(gate)
	if _, err := getValue(ctx, rt, user); err != nil {
		t.Fatal(err)
	}
	// The task's end frees the argument after the runtime lets go of its
	// lock, so a Get woken by the result may return first.
	eventually(t, "the argument is freed once its task and its handle are gone", func() bool { return rl.wasFreed(arg.ID) })
}

// Refs nested in a Put value live as long as the value.
func TestContainedRefsLiveWithTheirContainer(t *testing.T) {
	rt := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	inner, err := rt.Put(ctx, value("inner"), nil)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := rt.Put(ctx, value("outer"), []*Handle{inner})
	if err != nil {
		t.Fatal(err)
	}
	loc, err := rt.Get(ctx, outer)
	if err != nil || len(loc.Contained) != 1 || !bytes.Equal(loc.Contained[0].Id, inner.ID[:]) {
		t.Fatalf("outer's locator %v, %v: want inner contained", loc, err)
	}
	inner.Release()
	again := rt.HandleFor(inner.ID, rt.Addr())
	if got, err := getValue(ctx, rt, again); err != nil || got != "inner" {
		t.Fatalf("inner after its handle went: %q, %v; want it kept by outer", got, err)
	}
	again.Release()
	outer.Release()
	eventually(t, "both objects are freed", func() bool { return rt.Stats().Objects == 0 })
}

// A borrower fetches an object from its owner; a ref nested in it stays
// alive at the owner while the borrower holds the value, and is freed once
// the borrower lets go.
func TestBorrowedRefs(t *testing.T) {
	owner := newTestRuntime(t, newFakeRaylet(nil), Config{})
	borrower := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	inner, err := owner.Put(ctx, value("inner"), nil)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := owner.Put(ctx, value("outer"), []*Handle{inner})
	if err != nil {
		t.Fatal(err)
	}
	inner.Release()

	b := borrower.HandleFor(outer.ID, owner.Addr())
	if got, err := getValue(ctx, borrower, b); err != nil || got != "outer" {
		t.Fatalf("borrowed Get = %q, %v", got, err)
	}
	bi := borrower.HandleFor(inner.ID, owner.Addr())
	if got, err := getValue(ctx, borrower, bi); err != nil || got != "inner" {
		t.Fatalf("borrowed nested Get = %q, %v", got, err)
	}
	bi.Release()
	outer.Release() // the owner's own handle: inner is now held by the borrower alone
	if n := owner.Stats().Objects; n != 1 {
		t.Fatalf("owner keeps %d objects, want inner alone (lent)", n)
	}
	b.Release()
	eventually(t, "the owner frees inner once the borrower lets go", func() bool { return owner.Stats().Objects == 0 })
	if n := borrower.Stats().Objects; n != 0 {
		t.Fatalf("borrower keeps %d records", n)
	}
}

// A borrower whose owner is unreachable gets ErrOwnerDied; an object its
// owner has freed, ErrObjectFreed.
func TestBorrowFailures(t *testing.T) {
	owner := newTestRuntime(t, newFakeRaylet(nil), Config{})
	borrower := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	gone := borrower.HandleFor(ids.ForPut(), owner.Addr()+".gone")
	if _, err := getValue(ctx, borrower, gone); !errors.Is(err, ErrOwnerDied) || !strings.Contains(err.Error(), "died") {
		t.Fatalf("Get with the owner gone = %v, want ErrOwnerDied saying the owner died", err)
	}
	freed := borrower.HandleFor(ids.ForPut(), owner.Addr())
	_, err := getValue(ctx, borrower, freed)
	if err == nil || !strings.Contains(err.Error(), ErrObjectFreed.Error()) {
		t.Fatalf("Get of an object the owner freed = %v", err)
	}
}

// Malformed requests to the runtime's service get clear errors, and do not
// disturb it.
func TestMalformedRequests(t *testing.T) {
	rt := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	c, err := rpc.Dial(ctx, rt.Addr(), rpc.HandlerFunc(func(*rpc.Conn, rpc.Method, rpc.Kind, uint64, []byte) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	garbage := &pb.ObjectIDs{Ids: [][]byte{[]byte("x")}} // decodes, as another message, to nonsense
	for _, m := range []rpc.Method{rpc.MGetObject, rpc.MGetActorAddr} {
		if err := c.Call(ctx, m, garbage, &pb.Locator{}); err == nil {
			t.Errorf("method %d with a bad id: no error", m)
		}
		if err := c.Call(ctx, m, &pb.GetObject{ObjectId: []byte("short")}, &pb.Locator{}); err == nil || !strings.Contains(err.Error(), "identifier") {
			t.Errorf("method %d with a short id = %v, want the id refused", m, err)
		}
	}
	if _, err := c.CallRaw(ctx, rpc.MPushTask, &pb.Empty{}); err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Errorf("a method the runtime does not serve = %v", err)
	}
	for _, m := range []rpc.Method{rpc.MReleaseBorrowed, rpc.MKillOwnedActor} {
		if err := c.Notify(m, garbage); err != nil {
			t.Fatal(err)
		}
	}
	// Still serving.
	h, _ := rt.Put(ctx, value("v"), nil)
	loc := &pb.Locator{}
	if err := c.Call(ctx, rpc.MGetObject, &pb.GetObject{ObjectId: h.ID[:]}, loc); err != nil || string(loc.Inline) != "v" {
		t.Fatalf("GetObject after bad requests = %v, %v", loc, err)
	}
	list := &pb.ObjectList{}
	if err := c.Call(ctx, rpc.MListObjects, &pb.Empty{}, list); err != nil || len(list.Objects) != 1 || list.Objects[0].Kind != "INLINE" {
		t.Fatalf("ListObjects = %v, %v", list, err)
	}
}

// storeRuntime is a runtime on node "n1" with a real (anonymous, shared
// memory) store, so values past InlineLimit go there.
func storeRuntime(t *testing.T, w *fakeWorker) (*Runtime, *fakeRaylet) {
	t.Helper()
	a, err := objstore.CreateAnonArena("core-test", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	rl := newFakeRaylet(w)
	rl.arena = a
	return newTestRuntime(t, rl, Config{Arena: a, NodeAddr: "n1"}), rl
}

// A large Put goes to the store, is read back without a copy, and is
// freed there with its last handle; a full store says ErrStoreFull.
func TestPutInStore(t *testing.T) {
	rt, rl := storeRuntime(t, nil)
	ctx := testCtx(t)
	big := bytes.Repeat([]byte{7}, InlineLimit+1)
	h, err := rt.Put(ctx, value(string(big)), nil)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := rt.Get(ctx, h)
	if err != nil || !loc.InStore || loc.Size != int64(len(big)) || loc.NodeAddr != "n1" {
		t.Fatalf("Get = %v, %v", loc, err)
	}
	b, release, err := rt.Bytes(ctx, h.ID, h.Owner, loc)
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("Bytes: %d bytes, %v", len(b), err)
	}
	release()
	h.Release()
	if !rl.wasFreed(h.ID) {
		t.Fatal("the store copy outlived its last handle")
	}
	if _, err := rt.Put(ctx, value(string(bytes.Repeat(big, 40))), nil); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Put past the store's room = %v, want ErrStoreFull", err)
	}
}

// lineageRuntime runs tasks whose results it writes to the store itself,
// a fresh copy per attempt, as a worker on node n1 would.
func lineageRuntime(t *testing.T) (*Runtime, *fakeRaylet, *fakeWorker) {
	t.Helper()
	// The worker's goroutine finds the raylet through an atomic: it runs
	// after a message crossed a socket, which the race detector does not
	// see as ordering.
	var rlp atomic.Pointer[fakeRaylet]
	w := newFakeWorker(t, func(_ *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		rl := rlp.Load()
		tid, _ := ids.TaskIDFrom(spec.TaskId)
		id := ids.ForReturn(tid, 0)
		data := bytes.Repeat([]byte{byte('a' + spec.Attempt)}, 64)
		off, err := rl.CreateObject(context.Background(), id, int64(len(data)), "")
		if err != nil {
			return &pb.TaskReply{Error: &pb.TaskError{Kind: KindStoreFull, Message: err.Error()}}
		}
		if _, err := rl.arena.WriteAt(data, off); err != nil {
			return &pb.TaskReply{Error: &pb.TaskError{Kind: KindSystem, Message: err.Error()}}
		}
		return &pb.TaskReply{Returns: []*pb.Locator{{InStore: true, Offset: off, Size: int64(len(data)), NodeAddr: "n1"}}}
	})
	rt, rl := storeRuntime(t, w)
	rlp.Store(rl)
	return rt, rl, w
}

// A stored result whose copy is lost is made again by running its task
// once more, each time spending one of the task's retries, as in Ray;
// with none left it stays lost.
func TestLineageRebuildsLostObject(t *testing.T) {
	rt, rl, w := lineageRuntime(t)
	ctx := testCtx(t)
	h := submit1(t, rt, "maker", TaskOptions{MaxRetries: 2})
	loc, err := rt.Get(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	rl.mu.Lock()
	rl.lost[h.ID] = 1 // the node loses the copy once
	rl.mu.Unlock()
	b, release, err := rt.Bytes(ctx, h.ID, h.Owner, loc)
	if err != nil {
		t.Fatalf("Bytes of a lost object = %v, want it rebuilt", err)
	}
	if b[0] != 'b' {
		t.Fatalf("read %q, want the second attempt's copy", b[:1])
	}
	release()
	specs := w.pushed()
	if len(specs) != 2 || specs[1].Attempt != 1 || specs[1].Function != specs[0].Function {
		t.Fatalf("pushed %v, want the task run again as attempt 1", specs)
	}
	// The rebuilt copy is current: a read of the old locator rebuilds
	// nothing more once the store has it.
	loc2, _ := rt.Get(ctx, h)
	if loc2 == loc {
		t.Fatal("the owner still names the lost copy")
	}
	rl.mu.Lock()
	rl.lost[h.ID] = 100 // lost for good
	rl.mu.Unlock()
	_, _, err = rt.Bytes(ctx, h.ID, h.Owner, loc2)
	if !errors.Is(err, ErrObjectLost) || !strings.Contains(err.Error(), "no retries left") {
		t.Fatalf("Bytes of an object lost past its task's retries = %v, want ErrObjectLost saying so", err)
	}
	if n := len(w.pushed()); n != 3 {
		t.Fatalf("the task ran %d times, want 3 (once and a rebuild for each of its 2 retries)", n)
	}
}

// A task with MaxRetries(0) is never run again: its lost result stays
// lost (issue: a fixed count of rebuilds used to ignore the task's rule).
func TestLineageHonoursMaxRetriesZero(t *testing.T) {
	rt, rl, w := lineageRuntime(t)
	ctx := testCtx(t)
	h := submit1(t, rt, "once", TaskOptions{MaxRetries: 0})
	loc, err := rt.Get(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	rl.mu.Lock()
	rl.lost[h.ID] = 1
	rl.mu.Unlock()
	_, _, err = rt.Bytes(ctx, h.ID, h.Owner, loc)
	if !errors.Is(err, ErrObjectLost) || !strings.Contains(err.Error(), "task once") || !strings.Contains(err.Error(), "node n1") || !strings.Contains(err.Error(), h.ID.String()) {
		t.Fatalf("Bytes of a lost result of a MaxRetries(0) task = %v, want ErrObjectLost naming the object, the task and the node", err)
	}
	if n := len(w.pushed()); n != 1 {
		t.Fatalf("the task ran %d times, want once", n)
	}
}

// A Put object has no lineage: lost, it stays lost.
func TestPutObjectLostForGood(t *testing.T) {
	rt, rl := storeRuntime(t, nil)
	ctx := testCtx(t)
	h, err := rt.Put(ctx, value(string(bytes.Repeat([]byte{1}, InlineLimit+1))), nil)
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := rt.Get(ctx, h)
	rl.mu.Lock()
	rl.lost[h.ID] = 1
	rl.mu.Unlock()
	_, _, err = rt.Bytes(ctx, h.ID, h.Owner, loc)
	if !errors.Is(err, ErrObjectLost) || !strings.Contains(err.Error(), "made by Put: no lineage") || !strings.Contains(err.Error(), h.ID.String()) {
		t.Fatalf("Bytes = %v, want ErrObjectLost naming the object and saying a Put has no lineage", err)
	}
}

// An actor's stored result has no lineage either: lost, the error names
// the method and says actor results are not rebuilt, and the method is not
// run again.
func TestActorResultLostSaysWhy(t *testing.T) {
	rt, rl, w := lineageRuntime(t)
	ctx := testCtx(t)
	a := createActor(t, rt, ActorOptions{MaxTaskRetries: -1})
	h := call(t, rt, a, "Counter.Incr")
	loc, err := rt.Get(ctx, h)
	if err != nil || !loc.InStore {
		t.Fatalf("Get of the actor's stored result = %v, %v", loc, err)
	}
	rl.mu.Lock()
	rl.lost[h.ID] = 1
	rl.mu.Unlock()
	_, _, err = rt.Bytes(ctx, h.ID, h.Owner, loc)
	if !errors.Is(err, ErrObjectLost) || !strings.Contains(err.Error(), "returned by actor method Counter.Incr: actor results are not rebuilt") ||
		!strings.Contains(err.Error(), h.ID.String()) || !strings.Contains(err.Error(), "node n1") {
		t.Fatalf("Bytes of a lost actor result = %v, want ErrObjectLost naming the object, the method and the node", err)
	}
	if got := methodNames(w); len(got) != 1 {
		t.Fatalf("methods run: %v, want the call once", got)
	}
}

// A borrower that finds an object lost asks its owner, which runs the task
// again and answers with the new copy.
func TestBorrowerAsksOwnerToRebuild(t *testing.T) {
	owner, rl, w := lineageRuntime(t)
	borrower := newTestRuntime(t, rl, Config{Arena: rl.arena, NodeAddr: "n1"})
	ctx := testCtx(t)
	h := submit1(t, owner, "maker", TaskOptions{MaxRetries: 3}) // the public default
	if _, err := owner.Get(ctx, h); err != nil {
		t.Fatal(err)
	}
	b := borrower.HandleFor(h.ID, owner.Addr())
	loc, err := borrower.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	rl.mu.Lock()
	rl.lost[h.ID] = 1
	rl.mu.Unlock()
	data, release, err := borrower.Bytes(ctx, b.ID, b.Owner, loc)
	if err != nil || data[0] != 'b' {
		t.Fatalf("borrower's Bytes = %v; want the owner's rebuilt copy", err)
	}
	release()
	if n := len(w.pushed()); n != 2 {
		t.Fatalf("the task ran %d times, want 2", n)
	}
}

// Bytes of an inline value or of an error needs no store.
func TestBytesInlineAndError(t *testing.T) {
	rt := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	b, release, err := rt.Bytes(ctx, ids.ObjectID{}, "", &pb.Locator{Inline: []byte("hi")})
	if err != nil || string(b) != "hi" {
		t.Fatalf("inline Bytes = %q, %v", b, err)
	}
	release()
	_, _, err = rt.Bytes(ctx, ids.ObjectID{}, "", &pb.Locator{Error: &pb.TaskError{Kind: KindCancelled}})
	if !errors.Is(err, ErrTaskCancelled) {
		t.Fatalf("error Bytes = %v", err)
	}
	_, _, err = rt.Bytes(ctx, ids.ObjectID{}, "", &pb.Locator{InStore: true, Size: 4})
	if err == nil || !strings.Contains(err.Error(), "not mapped") {
		t.Fatalf("stored Bytes without a store = %v", err)
	}
}

// A worker waiting for an argument to be made again lends its CPU while it
// waits, as in a Get: when every CPU is held by readers of lost objects,
// the task that makes them again needs one (the chaos suite's lineage
// scenario hung on this).
func TestWorkerLendsCPUWhileObjectIsRebuilt(t *testing.T) {
	owner, rl, _ := lineageRuntime(t)
	worker := newTestRuntime(t, rl, Config{Arena: rl.arena, NodeAddr: "n1", IsWorker: true})
	ctx := testCtx(t)
	h := submit1(t, owner, "maker", TaskOptions{MaxRetries: 3})
	if _, err := owner.Get(ctx, h); err != nil {
		t.Fatal(err)
	}
	b := worker.HandleFor(h.ID, owner.Addr())
	loc, err := worker.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	rl.mu.Lock()
	rl.lost[h.ID] = 1
	rl.blocked = nil
	rl.mu.Unlock()
	_, release, err := worker.Bytes(ctx, b.ID, b.Owner, loc)
	if err != nil {
		t.Fatalf("worker's Bytes of a lost object = %v, want it rebuilt", err)
	}
	release()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.blocked) != 2 || !rl.blocked[0] || rl.blocked[1] {
		t.Fatalf("the worker told its raylet %v while the object was rebuilt, want blocked then unblocked", rl.blocked)
	}
}
