package raylet

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Creates of objects that are already here.
//
// A task can run again on a node that has its result: a retry whose
// first attempt stored the result before its reply was lost, a rebuild
// from lineage that lands where a reader pulled a copy of the object, or
// one whose earlier run's copy was only thought lost. Its result is the
// same object (a task is deterministic, as in Ray), so a create that
// finds the object sealed here is answered with that copy, which the
// creator takes as its own: the raylet keeps a pulled copy as a primary
// of this node (it spills, not evicted; transfer.Keep), and a spilled one is read back.
// An object still being written by another (a pull in flight, another
// run of the same task) is waited for. A create whose process went away
// before sealing it is aborted when its connection closes, so that what
// a dead worker half wrote is never taken for a result, nor stands in
// the way of the next attempt.

// creators remembers, per connection, the objects its process created
// and has not sealed (or freed) yet.
type creators struct {
	mu     sync.Mutex
	byConn map[*rpc.Conn]map[ids.ObjectID]struct{}
	byID   map[ids.ObjectID]*rpc.Conn
}

// add records that the process on c created id.
func (cs *creators) add(c *rpc.Conn, id ids.ObjectID) {
	if c == nil {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.byConn == nil {
		cs.byConn = make(map[*rpc.Conn]map[ids.ObjectID]struct{})
		cs.byID = make(map[ids.ObjectID]*rpc.Conn)
	}
	cs.forgetLocked(id)
	m := cs.byConn[c]
	if m == nil {
		m = make(map[ids.ObjectID]struct{})
		cs.byConn[c] = m
	}
	m[id] = struct{}{}
	cs.byID[id] = c
}

// settled forgets the creates of list, sealed or freed (by anyone).
func (cs *creators) settled(list []ids.ObjectID) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, id := range list {
		cs.forgetLocked(id)
	}
}

func (cs *creators) forgetLocked(id ids.ObjectID) {
	c, ok := cs.byID[id]
	if !ok {
		return
	}
	delete(cs.byID, id)
	if m := cs.byConn[c]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(cs.byConn, c)
		}
	}
}

// gone returns the creates c left unsealed, forgetting them.
func (cs *creators) gone(c *rpc.Conn) []ids.ObjectID {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := cs.byConn[c]
	delete(cs.byConn, c)
	out := make([]ids.ObjectID, 0, len(m))
	for id := range m {
		delete(cs.byID, id)
		out = append(out, id)
	}
	return out
}

// abortCreatesOf aborts the objects the process on c created and never
// sealed: it is gone, and nobody else will finish them.
func (r *Raylet) abortCreatesOf(c *rpc.Conn) {
	list := r.creates.gone(c)
	aborted := 0
	for _, id := range list {
		if r.store.Abort(id) == nil {
			aborted++
			r.log.Debug("aborted a create its process left unsealed", "object", id.String())
		}
	}
	if aborted > 0 {
		r.wakeSealWaiters() // creates waiting for them to be sealed look again
	}
}

// wakeSealWaiters wakes what waits for a seal (waitSealed) to look again.
func (r *Raylet) wakeSealWaiters() {
	r.sealMu.Lock()
	if r.sealWake != nil {
		close(r.sealWake)
		r.sealWake = nil
	}
	r.sealMu.Unlock()
}

// serveSeal answers an MSealObjects.
func (r *Raylet) serveSeal(_ context.Context, req *pb.ObjectIDs) {
	list := objectIDs(req)
	r.creates.settled(list)
	r.SealObjects(list)
}

// serveFree answers an MFreeObjects: the owner's free of an object, or a
// writer's of its failed create.
func (r *Raylet) serveFree(_ context.Context, req *pb.ObjectIDs) {
	list := objectIDs(req)
	r.creates.settled(list)
	r.FreeObjects(list)
}

// spilled reports whether id is spilled to this node's disk.
func (r *Raylet) spilled(id ids.ObjectID) bool {
	if r.spill.disk == nil {
		return false
	}
	_, ok := r.spill.disk.Has(id)
	return ok
}

// createExisting answers a create of id, which is in the store already
// (sealed, being written, or spilled) for the process on c: with the
// sealed copy (Exists), once there is one, or with a fresh create when
// the one in the way was aborted meanwhile.
func (r *Raylet) createExisting(ctx context.Context, c *rpc.Conn, id ids.ObjectID, size int64, owner objOwner) (*pb.CreateObjectReply, error) {
	for {
		// pin finds a sealed copy, reads back a spilled one, and waits
		// (sealWait at most) for one being written.
		off, got, err := r.spill.pin(ctx, c, id)
		if err == nil {
			r.spill.unpin(c, []ids.ObjectID{id})
			pulled := r.xfer.IsPulled(id)
			if r.xfer.Keep(id) {
				// A primary now, with its owner: it spills rather than
				// goes, and a drain hands it over.
				r.owners.set(id, owner)
				r.spill.sealed([]ids.ObjectID{id})
			}
			r.log.Debug("a create found its object sealed here: a task run again", "object", id.String(), "pulled_copy", pulled)
			return &pb.CreateObjectReply{Offset: off, Size: got, Exists: true}, nil
		}
		if ctx.Err() != nil {
			return objectReply(0, fmt.Errorf("raylet: create %s: %w", id, context.Cause(ctx)))
		}
		if r.store.Unsealed(id) {
			if r.waitSealed(id) || !r.store.Unsealed(id) {
				continue // sealed, or aborted: look again
			}
			// Its writer is alive (a dead one's create is aborted) and
			// has not sealed it within sealWait.
			return objectReply(0, fmt.Errorf("%w: %s is still being written by another process after %v", objstore.ErrExists, id, sealWait))
		}
		off, err = r.spill.create(ctx, id, size)
		if errors.Is(err, objstore.ErrExists) {
			continue // made meanwhile: take that one
		}
		if err == nil {
			r.creates.add(c, id)
			r.owners.set(id, owner)
		}
		return objectReply(off, err)
	}
}
