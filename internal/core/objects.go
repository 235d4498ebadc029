package core

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// objectTable is the owner's memory store and reference counts: the
// record of every object this process owns or borrows.
type objectTable struct {
	rt    *Runtime                   // the runtime it belongs to: its other tables, peers and raylet
	self  string                     // this process's address: the owner of what it owns
	fetch func(ids.ObjectID, string) // starts asking a borrowed object's owner for it

	mu      sync.Mutex // protects byID, changed and the fields of every object
	byID    map[ids.ObjectID]*object
	changed chan struct{} // closed when an object completes, if a Wait sleeps on it
}

type objState uint8

const (
	statePending objState = iota
	stateReady            // loc holds the value (inline or in the store)
	stateFailed           // loc.Error says why
)

// object is this process's record of one object: one it owns (the owner's
// memory store and reference count), or one it borrows (a cached locator
// and how long to keep telling the owner it is in use).
type object struct {
	state objState
	loc   *pb.Locator
	done  chan struct{} // closed when no longer pending; made on first wait
	wake  []func()      // run (outside the lock) when no longer pending

	owned bool
	owner string // owner's address when borrowed

	local     int32 // live handles in this process
	pins      int32 // pending tasks using it, objects containing it
	borrowers int32 // owned: grants to other processes not yet released
	granted   int32 // borrowed: grants from the owner to release when done
	fetching  bool  // borrowed: a GetObject is in flight

	contained []*pb.ObjectRef // refs nested in the value, pinned while it lives
	task      *task           // owned and pending: the task that makes it
	lineage   *lineage        // owned, in a store: how to make it again
	madeBy    string          // owned, in a store: the actor method that returned it (no lineage)
	rebuilds  int
}

// Handle is one reference to an object held by user code. The runtime
// counts live handles; a handle that the garbage collector reclaims, or
// that is released, no longer keeps its object.
type Handle struct {
	ID       ids.ObjectID
	Owner    string
	rt       *Runtime
	released atomic.Bool
	cleanup  runtime.Cleanup
}

type releaseArg struct {
	id ids.ObjectID
	rt *Runtime
}

// newHandleLocked makes a handle that counts as a local reference to obj.
// The caller holds objs.mu.
func (ot *objectTable) newHandleLocked(id ids.ObjectID, owner string, obj *object) *Handle {
	obj.local++
	h := &Handle{ID: id, Owner: owner, rt: ot.rt}
	h.cleanup = runtime.AddCleanup(h, releaseHandle, releaseArg{id, ot.rt})
	return h
}

func releaseHandle(a releaseArg) { a.rt.objs.releaseLocal(a.id) }

// Release drops this handle's reference now instead of when the garbage
// collector finds it. It is safe to call more than once.
func (h *Handle) Release() {
	if h == nil || !h.released.CompareAndSwap(false, true) {
		return
	}
	h.cleanup.Stop()
	h.rt.objs.releaseLocal(h.ID)
}

// HandleFor makes a handle for a ref that arrived inside a value.
func (rt *Runtime) HandleFor(id ids.ObjectID, owner string) *Handle {
	return rt.objs.handleFor(id, owner)
}

// handleFor does the work of Runtime.HandleFor.
func (ot *objectTable) handleFor(id ids.ObjectID, owner string) *Handle {
	ot.mu.Lock()
	defer ot.mu.Unlock()
	obj := ot.byID[id]
	if obj == nil {
		obj = &object{owner: owner}
		if owner == ot.rt.addr {
			// Ours but already freed: the handle stays dangling and Get says so.
			obj.state = stateFailed
			obj.owned = true
			obj.loc = &pb.Locator{Error: sysErr("", KindSystem, ErrObjectFreed.Error())}
			return &Handle{ID: id, Owner: owner, rt: ot.rt}
		}
		ot.byID[id] = obj
	}
	return ot.newHandleLocked(id, owner, obj)
}

func (ot *objectTable) releaseLocal(id ids.ObjectID) {
	var after actions
	ot.mu.Lock()
	if obj := ot.byID[id]; obj != nil {
		obj.local--
		ot.maybeFreeLocked(id, obj, &after)
	}
	ot.mu.Unlock()
	after.run(ot.rt)
}

// actions are what a locked section decided to do once unlocked.
type actions struct {
	wake     []func()
	free     map[string][]ids.ObjectID  // store objects to delete, by node ("" = this one)
	release  map[string][]*pb.ObjectRef // grants to hand back, by owner
	push     []pushOp
	lease    []*schedQueue // queues that want one more lease each
	returned []*lease
	create   []*actorRec // actors whose creation is ready to be scheduled
	flush    []*actorRec // actors with calls to write
}

func (a *actions) run(rt *Runtime) {
	for _, f := range a.wake {
		f()
	}
	if len(a.free) > 0 && rt.cfg.Raylet != nil {
		rt.objs.freeObjects(a.free)
	}
	for owner, refs := range a.release {
		msg := &pb.ObjectIDs{}
		for _, r := range refs {
			msg.Ids = append(msg.Ids, r.Id)
		}
		rt.goroutine("release borrowed", func() { rt.peers.notify(owner, rpc.MReleaseBorrowed, msg) })
	}
	if len(a.push) > 1 {
		// Several tasks for the same workers: one write per connection.
		corked := map[*rpc.Conn]bool{}
		for _, p := range a.push {
			if c := p.l.conn; !corked[c] {
				corked[c] = true
				c.Cork()
			}
		}
		defer func() {
			for c := range corked {
				_ = c.Uncork()
			}
		}()
	}
	for _, p := range a.push {
		rt.tasks.push(p)
	}
	for _, x := range a.flush {
		rt.actors.flushActor(x)
	}
	for _, q := range a.lease {
		rt.tasks.requestLease(q)
	}
	for _, l := range a.returned {
		l.raylet(rt).ReturnLease(&pb.ReturnLease{LeaseId: l.id, WorkerFailed: l.dead})
	}
	for _, r := range a.create {
		rt.actors.requestActorLease(r)
	}
}

// maybeFreeLocked deletes obj when nothing refers to it any more. The
// caller holds objs.mu.
func (ot *objectTable) maybeFreeLocked(id ids.ObjectID, obj *object, after *actions) {
	if obj.local > 0 || obj.pins > 0 || obj.borrowers > 0 {
		return
	}
	if obj.owned && obj.state == statePending {
		return // freed when its task finishes
	}
	delete(ot.byID, id)
	if obj.owned {
		if obj.loc != nil && obj.loc.InStore {
			after.freeAt(id, obj.loc)
		}
	} else if obj.granted > 0 {
		if after.release == nil {
			after.release = make(map[string][]*pb.ObjectRef)
		}
		for ; obj.granted > 0; obj.granted-- {
			after.release[obj.owner] = append(after.release[obj.owner], &pb.ObjectRef{Id: id[:], OwnerAddr: obj.owner})
		}
	}
	for _, ref := range obj.contained {
		ot.unpinLocked(ref, after)
	}
	obj.contained = nil
	ot.dropLineageLocked(obj, after)
}

// pinLocked keeps the object ref names alive until unpinLocked. For a ref
// this process does not own, a record is made if needed so the pin holds
// whatever grant the owner gave. The caller holds objs.mu.
func (ot *objectTable) pinLocked(ref *pb.ObjectRef, granted bool) {
	id, err := ids.ObjectIDFrom(ref.Id)
	if err != nil {
		return
	}
	obj := ot.byID[id]
	if obj == nil {
		if ref.OwnerAddr == ot.self {
			return // already freed; nothing to keep
		}
		obj = &object{owner: ref.OwnerAddr}
		ot.byID[id] = obj
	}
	obj.pins++
	if granted && !obj.owned {
		obj.granted++
	}
}

func (ot *objectTable) unpinLocked(ref *pb.ObjectRef, after *actions) {
	id, err := ids.ObjectIDFrom(ref.Id)
	if err != nil {
		return
	}
	if obj := ot.byID[id]; obj != nil {
		obj.pins--
		ot.maybeFreeLocked(id, obj, after)
	}
}

// completeLocked settles a pending object and collects its waiters. The
// caller holds objs.mu.
func (ot *objectTable) completeLocked(obj *object, loc *pb.Locator, after *actions) {
	if obj.state != statePending {
		return
	}
	obj.loc = loc
	if loc.Error != nil {
		obj.state = stateFailed
	} else {
		obj.state = stateReady
	}
	obj.task = nil
	if obj.done != nil {
		close(obj.done)
	}
	if ot.changed != nil {
		close(ot.changed)
		ot.changed = nil
	}
	after.wake = append(after.wake, obj.wake...)
	obj.wake = nil
}

// whenReadyLocked runs f (outside the lock) once obj is no longer pending:
// at once, through after, if it already is. The caller holds objs.mu.
func (ot *objectTable) whenReadyLocked(id ids.ObjectID, obj *object, f func(), after *actions) {
	if obj.state != statePending {
		after.wake = append(after.wake, f)
		return
	}
	obj.wake = append(obj.wake, f)
	if !obj.owned && !obj.fetching {
		obj.fetching = true
		owner := obj.owner
		ot.fetch(id, owner)
	}
}

// maxFetchRetries bounds how often a borrower asks an owner again whose
// connection stays up but whose answer was lost.
const maxFetchRetries = 10

// fetch asks a borrowed object's owner for its locator.
func (ot *objectTable) fetchFromOwner(id ids.ObjectID, owner string) { ot.fetchTry(id, owner, 0) }

func (ot *objectTable) fetchTry(id ids.ObjectID, owner string, tries int) {
	rt := ot.rt
	c, err := rt.peers.peer(context.Background(), owner)
	if err != nil {
		ot.fetched(id, owner, &pb.Locator{Error: rt.ownerDied(id, owner, err)})
		return
	}
	c.Go(rpc.MGetObject, &pb.GetObject{ObjectId: id[:]}, func(body []byte, err error) {
		var answered *rpc.RemoteError
		if err != nil && c.Err() == nil && !errors.As(err, &answered) && tries < maxFetchRetries && !rt.closed.Load() {
			// The request or its reply was lost, but the owner is there
			// (its connection is up): ask again.
			pause := min(10*time.Millisecond<<tries, 500*time.Millisecond)
			rt.after("fetch again", pause, func() { ot.fetchTry(id, owner, tries+1) })
			return
		}
		loc := &pb.Locator{}
		if err == nil {
			err = rpc.Decode(body, loc)
		}
		if err != nil {
			loc = &pb.Locator{Error: rt.ownerDied(id, owner, err)}
		}
		ot.fetched(id, owner, loc)
	})
}

func (ot *objectTable) fetched(id ids.ObjectID, owner string, loc *pb.Locator) {
	var after actions
	ot.mu.Lock()
	obj := ot.byID[id]
	if obj != nil {
		obj.fetching = false
		for _, ref := range loc.Contained {
			ot.pinLocked(ref, ref.OwnerAddr == owner)
		}
		obj.contained = append(obj.contained, loc.Contained...)
		ot.completeLocked(obj, loc, &after)
	} else {
		// Nobody wants it any more; hand back what the owner granted.
		tmp := &object{contained: loc.Contained}
		for _, ref := range loc.Contained {
			ot.pinLocked(ref, ref.OwnerAddr == owner)
		}
		ot.byID[id] = tmp
		ot.maybeFreeLocked(id, tmp, &after)
	}
	ot.mu.Unlock()
	after.run(ot.rt)
}

// serveGetObject answers a borrower once the object is ready.
func (ot *objectTable) serveGetObject(_ context.Context, req *pb.GetObject, reply func(*pb.Locator, error)) {
	id, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, err)
		return
	}
	var after actions
	ot.mu.Lock()
	obj := ot.byID[id]
	if obj == nil || !obj.owned {
		ot.mu.Unlock()
		reply(&pb.Locator{Error: sysErr("", KindSystem, ErrObjectFreed.Error()+": "+id.String())}, nil)
		return
	}
	if req.LostAt != "" {
		ot.mu.Unlock()
		ot.rt.serveLost(id, req.LostAt, reply)
		return
	}
	ot.whenReadyLocked(id, obj, func() {
		ot.mu.Lock()
		loc := obj.loc
		for _, ref := range loc.Contained {
			if ref.OwnerAddr == ot.rt.addr {
				if o, err := ids.ObjectIDFrom(ref.Id); err == nil && ot.byID[o] != nil {
					ot.byID[o].borrowers++
				}
			}
		}
		ot.mu.Unlock()
		reply(loc, nil)
	}, &after)
	ot.mu.Unlock()
	after.run(ot.rt)
}

// serveReleaseBorrowed drops grants that a borrower hands back.
func (ot *objectTable) serveReleaseBorrowed(_ context.Context, msg *pb.ObjectIDs) {
	var after actions
	ot.mu.Lock()
	for _, b := range msg.Ids {
		id, err := ids.ObjectIDFrom(b)
		if err != nil {
			continue
		}
		if obj := ot.byID[id]; obj != nil && obj.owned && obj.borrowers > 0 {
			obj.borrowers--
			ot.maybeFreeLocked(id, obj, &after)
		}
	}
	ot.mu.Unlock()
	after.run(ot.rt)
}

// Runtime is the runtime the handle belongs to.
func (h *Handle) Runtime() *Runtime { return h.rt }

// storeValue puts an encoded value where it belongs: inline when small,
// in the node's store otherwise.
// owner is the object's owner's endpoint.
func (ot *objectTable) storeValue(ctx context.Context, id ids.ObjectID, p codec.Payload, owner string) (*pb.Locator, error) {
	n := p.Len()
	if n <= InlineLimit || ot.rt.cfg.Arena == nil {
		return &pb.Locator{Inline: p.Bytes()}, nil
	}
	off, err := ot.createInStore(ctx, id, int64(n), owner)
	var there *objstore.ExistingError
	if errors.As(err, &there) {
		// A task run again (a retry, or a rebuild from lineage) on a node
		// that has its result sealed already, from an earlier attempt or
		// as a pulled copy: that copy is the result.
		return &pb.Locator{InStore: true, Offset: there.Offset, Size: there.Size, NodeAddr: ot.rt.cfg.NodeAddr}, nil
	}
	if err != nil {
		return nil, err
	}
	// WriteAt, not a copy into Slice: pages this process never touched
	// cost a fault each through the mapping, none through pwrite.
	if err := writePayload(ot.rt.cfg.Arena, off, p); err != nil {
		ot.rt.cfg.Raylet.FreeObjects([]ids.ObjectID{id})
		return nil, fmt.Errorf("core: write to store: %w", err)
	}
	ot.rt.cfg.Raylet.SealObjects([]ids.ObjectID{id})
	return &pb.Locator{InStore: true, Offset: off, Size: int64(n), NodeAddr: ot.rt.cfg.NodeAddr}, nil
}

// writePayload writes p at off of the store.
func writePayload(a *objstore.Arena, off int64, p codec.Payload) error {
	if _, err := a.WriteAt(p.Header, off); err != nil {
		return err
	}
	_, err := a.WriteAt(p.Body, off+int64(len(p.Header)))
	return err
}

// createInStore reserves space, and when the store is full first lets the
// garbage collector release the refs nobody holds, then tries again.
func (ot *objectTable) createInStore(ctx context.Context, id ids.ObjectID, size int64, owner string) (int64, error) {
	off, err := ot.rt.cfg.Raylet.CreateObject(ctx, id, size, owner)
	if err == nil || !errors.Is(err, objstore.ErrFull) {
		return off, wrapStoreErr(err)
	}
	ot.rt.gcMu.Lock()
	defer ot.rt.gcMu.Unlock()
	for i := 0; i < 5; i++ {
		runtime.GC()
		// Cleanups run on their own goroutine after the collection; give
		// them a moment, bounded, before asking again.
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Duration(i+1) * 10 * time.Millisecond):
		}
		off, err = ot.rt.cfg.Raylet.CreateObject(ctx, id, size, owner)
		if err == nil || !errors.Is(err, objstore.ErrFull) {
			return off, wrapStoreErr(err)
		}
	}
	return 0, wrapStoreErr(err)
}

// wrapStoreErr makes a store without room for an object, whether full or
// smaller than the object, match ErrStoreFull.
func wrapStoreErr(err error) error {
	if err != nil && (errors.Is(err, objstore.ErrFull) || errors.Is(err, objstore.ErrTooLarge)) {
		return fmt.Errorf("%w: %v", ErrStoreFull, err)
	}
	return err
}

// put does the work of Runtime.Put.
func (ot *objectTable) put(ctx context.Context, p codec.Payload, contained []*Handle) (*Handle, error) {
	id := ids.ForPut()
	loc, err := ot.storeValue(ctx, id, p, ot.rt.addr)
	if err != nil {
		return nil, err
	}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	if ot.rt.closed.Load() {
		if loc.InStore {
			ot.rt.cfg.Raylet.FreeObjects([]ids.ObjectID{id})
		}
		return nil, ot.rt.errShutdown()
	}
	obj := &object{state: stateReady, loc: loc, owned: true, owner: ot.rt.addr}
	for _, h := range contained {
		ref := &pb.ObjectRef{Id: h.ID[:], OwnerAddr: h.Owner}
		ot.pinLocked(ref, false)
		obj.contained = append(obj.contained, ref)
	}
	loc.Contained = obj.contained
	ot.byID[id] = obj
	return ot.newHandleLocked(id, ot.rt.addr, obj), nil
}

// getMany does the work of Runtime.GetMany.
func (ot *objectTable) getMany(ctx context.Context, hs []*Handle) ([]*pb.Locator, error) {
	out := make([]*pb.Locator, len(hs))
	blocked := false
	defer func() {
		if blocked {
			ot.rt.unblock()
		}
	}()
	for i, h := range hs {
		loc, done, err := ot.lookup(h)
		if err != nil {
			return nil, err
		}
		if loc == nil {
			if !blocked {
				ot.rt.block()
				blocked = true
			}
			if loc, err = ot.await(ctx, h, done); err != nil {
				return nil, err
			}
		}
		out[i] = loc
	}
	return out, nil
}

// get does the work of Runtime.Get.
func (ot *objectTable) get(ctx context.Context, h *Handle) (*pb.Locator, error) {
	loc, done, err := ot.lookup(h)
	if loc != nil || err != nil {
		return loc, err
	}
	ot.rt.block()
	defer ot.rt.unblock()
	return ot.await(ctx, h, done)
}

// lookup returns the object's locator if it is ready, or a channel closed
// when it is (starting a fetch from its owner if it is borrowed).
func (ot *objectTable) lookup(h *Handle) (*pb.Locator, <-chan struct{}, error) {
	if h == nil {
		return nil, nil, ErrNilRef
	}
	ot.mu.Lock()
	if ot.rt.closed.Load() {
		ot.mu.Unlock()
		return nil, nil, ot.rt.errShutdown()
	}
	obj := ot.byID[h.ID]
	if obj == nil {
		ot.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: %s", ErrObjectFreed, h.ID)
	}
	if obj.state != statePending {
		loc := obj.loc
		ot.mu.Unlock()
		return loc, nil, nil
	}
	if obj.done == nil {
		obj.done = make(chan struct{})
	}
	done := obj.done
	var after actions
	if !obj.owned && !obj.fetching {
		ot.whenReadyLocked(h.ID, obj, func() {}, &after)
	}
	ot.mu.Unlock()
	after.run(ot.rt)
	return nil, done, nil
}

func (ot *objectTable) await(ctx context.Context, h *Handle, done <-chan struct{}) (*pb.Locator, error) {
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	if ot.rt.closed.Load() {
		return nil, ot.rt.errShutdown()
	}
	obj := ot.byID[h.ID]
	if obj == nil {
		return nil, fmt.Errorf("%w: %s", ErrObjectFreed, h.ID)
	}
	return obj.loc, nil
}

// wait does the work of Runtime.Wait.
func (ot *objectTable) wait(ctx context.Context, hs []*Handle, n int) (ready, rest []int, err error) {
	for _, h := range hs {
		if h == nil {
			return nil, nil, ErrNilRef
		}
	}
	if ready, err = ot.waitIndexed(ctx, len(hs), n, func(i int) *Handle { return hs[i] }); err != nil {
		return nil, nil, err
	}
	rest = make([]int, 0, len(hs)-len(ready))
	j := 0
	for i := range hs {
		if j < len(ready) && ready[j] == i {
			j++
		} else {
			rest = append(rest, i)
		}
	}
	return ready, rest, nil
}

// waitIndexed does the work of Runtime.WaitIndexed.
func (ot *objectTable) waitIndexed(ctx context.Context, count, n int, at func(int) *Handle) (ready []int, err error) {
	if n > count {
		n = count
	}
	blocked := false
	defer func() {
		if blocked {
			ot.rt.unblock()
		}
	}()
	for {
		var after actions
		ot.mu.Lock()
		if ot.rt.closed.Load() {
			ot.mu.Unlock()
			return nil, ot.rt.errShutdown()
		}
		ready = ready[:0]
		for i := 0; i < count && len(ready) < n; i++ {
			h := at(i)
			obj := ot.byID[h.ID]
			if obj == nil || obj.state != statePending {
				ready = append(ready, i)
			} else if !obj.owned && !obj.fetching {
				ot.whenReadyLocked(h.ID, obj, func() {}, &after)
			}
		}
		if len(ready) >= n || ctx.Err() != nil {
			ot.mu.Unlock()
			after.run(ot.rt)
			return ready, nil
		}
		if ot.changed == nil {
			ot.changed = make(chan struct{})
		}
		changed := ot.changed
		ot.mu.Unlock()
		after.run(ot.rt)
		if !blocked {
			ot.rt.block()
			blocked = true
		}
		select {
		case <-changed:
		case <-ctx.Done():
		}
	}
}

// storeResult does the work of Runtime.StoreResult.
func (ot *objectTable) storeResult(ctx context.Context, id ids.ObjectID, r Result) (*pb.Locator, error) {
	loc, err := ot.storeValue(ctx, id, r.Value, r.Owner)
	if err != nil {
		return nil, err
	}
	if len(r.Contained) == 0 {
		return loc, nil
	}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	for _, h := range r.Contained {
		if h.Owner == ot.rt.addr {
			if obj := ot.byID[h.ID]; obj != nil {
				obj.borrowers++
			}
		}
		loc.Contained = append(loc.Contained, &pb.ObjectRef{Id: h.ID[:], OwnerAddr: h.Owner})
	}
	return loc, nil
}
