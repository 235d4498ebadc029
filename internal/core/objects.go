package core

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// objectTable is the owner's memory store and reference counts: the
// record of every object this process owns or borrows.
type objectTable struct {
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
func (rt *Runtime) newHandleLocked(id ids.ObjectID, owner string, obj *object) *Handle {
	obj.local++
	h := &Handle{ID: id, Owner: owner, rt: rt}
	h.cleanup = runtime.AddCleanup(h, releaseHandle, releaseArg{id, rt})
	return h
}

func releaseHandle(a releaseArg) { a.rt.releaseLocal(a.id) }

// Release drops this handle's reference now instead of when the garbage
// collector finds it. It is safe to call more than once.
func (h *Handle) Release() {
	if h == nil || !h.released.CompareAndSwap(false, true) {
		return
	}
	h.cleanup.Stop()
	h.rt.releaseLocal(h.ID)
}

// HandleFor makes a handle for a ref that arrived inside a value.
func (rt *Runtime) HandleFor(id ids.ObjectID, owner string) *Handle {
	rt.objs.mu.Lock()
	defer rt.objs.mu.Unlock()
	obj := rt.objs.byID[id]
	if obj == nil {
		obj = &object{owner: owner}
		if owner == rt.addr {
			// Ours but already freed: the handle stays dangling and Get says so.
			obj.state = stateFailed
			obj.owned = true
			obj.loc = &pb.Locator{Error: sysErr("", KindSystem, ErrObjectFreed.Error())}
			return &Handle{ID: id, Owner: owner, rt: rt}
		}
		rt.objs.byID[id] = obj
	}
	return rt.newHandleLocked(id, owner, obj)
}

func (rt *Runtime) releaseLocal(id ids.ObjectID) {
	var after actions
	rt.objs.mu.Lock()
	if obj := rt.objs.byID[id]; obj != nil {
		obj.local--
		rt.objs.maybeFreeLocked(id, obj, &after)
	}
	rt.objs.mu.Unlock()
	after.run(rt)
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
		rt.freeObjects(a.free)
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
		rt.push(p)
	}
	for _, x := range a.flush {
		rt.flushActor(x)
	}
	for _, q := range a.lease {
		rt.requestLease(q)
	}
	for _, l := range a.returned {
		l.raylet(rt).ReturnLease(&pb.ReturnLease{LeaseId: l.id, WorkerFailed: l.dead})
	}
	for _, r := range a.create {
		rt.requestActorLease(r)
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
func (rt *Runtime) fetch(id ids.ObjectID, owner string) { rt.fetchTry(id, owner, 0) }

func (rt *Runtime) fetchTry(id ids.ObjectID, owner string, tries int) {
	c, err := rt.peers.peer(context.Background(), owner)
	if err != nil {
		rt.fetched(id, owner, &pb.Locator{Error: rt.ownerDied(id, owner, err)})
		return
	}
	c.Go(rpc.MGetObject, &pb.GetObject{ObjectId: id[:]}, func(body []byte, err error) {
		var answered *rpc.RemoteError
		if err != nil && c.Err() == nil && !errors.As(err, &answered) && tries < maxFetchRetries && !rt.closed.Load() {
			// The request or its reply was lost, but the owner is there
			// (its connection is up): ask again.
			pause := min(10*time.Millisecond<<tries, 500*time.Millisecond)
			rt.after("fetch again", pause, func() { rt.fetchTry(id, owner, tries+1) })
			return
		}
		loc := &pb.Locator{}
		if err == nil {
			err = rpc.Decode(body, loc)
		}
		if err != nil {
			loc = &pb.Locator{Error: rt.ownerDied(id, owner, err)}
		}
		rt.fetched(id, owner, loc)
	})
}

func (rt *Runtime) fetched(id ids.ObjectID, owner string, loc *pb.Locator) {
	var after actions
	rt.objs.mu.Lock()
	obj := rt.objs.byID[id]
	if obj != nil {
		obj.fetching = false
		for _, ref := range loc.Contained {
			rt.objs.pinLocked(ref, ref.OwnerAddr == owner)
		}
		obj.contained = append(obj.contained, loc.Contained...)
		rt.objs.completeLocked(obj, loc, &after)
	} else {
		// Nobody wants it any more; hand back what the owner granted.
		tmp := &object{contained: loc.Contained}
		for _, ref := range loc.Contained {
			rt.objs.pinLocked(ref, ref.OwnerAddr == owner)
		}
		rt.objs.byID[id] = tmp
		rt.objs.maybeFreeLocked(id, tmp, &after)
	}
	rt.objs.mu.Unlock()
	after.run(rt)
}

// serveGetObject answers a borrower once the object is ready.
func (rt *Runtime) serveGetObject(_ context.Context, req *pb.GetObject, reply func(*pb.Locator, error)) {
	id, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, err)
		return
	}
	var after actions
	rt.objs.mu.Lock()
	obj := rt.objs.byID[id]
	if obj == nil || !obj.owned {
		rt.objs.mu.Unlock()
		reply(&pb.Locator{Error: sysErr("", KindSystem, ErrObjectFreed.Error()+": "+id.String())}, nil)
		return
	}
	if req.LostAt != "" {
		rt.objs.mu.Unlock()
		rt.serveLost(id, req.LostAt, reply)
		return
	}
	rt.objs.whenReadyLocked(id, obj, func() {
		rt.objs.mu.Lock()
		loc := obj.loc
		for _, ref := range loc.Contained {
			if ref.OwnerAddr == rt.addr {
				if o, err := ids.ObjectIDFrom(ref.Id); err == nil && rt.objs.byID[o] != nil {
					rt.objs.byID[o].borrowers++
				}
			}
		}
		rt.objs.mu.Unlock()
		reply(loc, nil)
	}, &after)
	rt.objs.mu.Unlock()
	after.run(rt)
}

// serveReleaseBorrowed drops grants that a borrower hands back.
func (rt *Runtime) serveReleaseBorrowed(_ context.Context, msg *pb.ObjectIDs) {
	var after actions
	rt.objs.mu.Lock()
	for _, b := range msg.Ids {
		id, err := ids.ObjectIDFrom(b)
		if err != nil {
			continue
		}
		if obj := rt.objs.byID[id]; obj != nil && obj.owned && obj.borrowers > 0 {
			obj.borrowers--
			rt.objs.maybeFreeLocked(id, obj, &after)
		}
	}
	rt.objs.mu.Unlock()
	after.run(rt)
}

// Runtime is the runtime the handle belongs to.
func (h *Handle) Runtime() *Runtime { return h.rt }
