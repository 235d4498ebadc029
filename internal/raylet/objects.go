package raylet

import (
	"context"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// CreateObject reserves space in the store for an object owned by the
// process at the endpoint owner, waiting up to ctx while spilling makes
// room.
func (r *Raylet) CreateObject(ctx context.Context, id ids.ObjectID, size int64, owner string) (int64, error) {
	off, err := r.spill.create(ctx, id, size)
	if err == nil {
		r.owners.set(id, objOwner{addr: owner, job: r.cfg.EmbeddedJob})
	}
	return off, err
}

// PullObject copies an object from another node into this node's store
// and pins the copy for this process (the raylet's host) until
// UnpinObjects.
func (r *Raylet) PullObject(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	return r.pullPinned(ctx, nil, id, from, size)
}

// SealObjects makes created objects readable.
func (r *Raylet) SealObjects(list []ids.ObjectID) {
	for _, id := range list {
		_ = r.store.Seal(id)
	}
	if len(list) > 0 {
		r.spill.sealed(list)
	}
	r.sealMu.Lock()
	if r.sealWake != nil {
		close(r.sealWake)
		r.sealWake = nil
	}
	r.sealMu.Unlock()
}

// sealed is closed at the next seal of any object.
func (r *Raylet) sealed() <-chan struct{} {
	r.sealMu.Lock()
	defer r.sealMu.Unlock()
	if r.sealWake == nil {
		r.sealWake = make(chan struct{})
	}
	return r.sealWake
}

// sealWait bounds how long a read waits for an object being sealed: the
// seal was sent before the object's location left its owner.
const sealWait = 10 * time.Second

// waitSealed waits until id is sealed here, and reports whether it is.
func (r *Raylet) waitSealed(id ids.ObjectID) bool {
	deadline := time.NewTimer(sealWait)
	defer deadline.Stop()
	for {
		wake := r.sealed() // before looking: a seal after the look wakes us
		if !r.store.Unsealed(id) {
			_, _, ok := r.store.Lookup(id)
			return ok
		}
		select {
		case <-wake:
		case <-deadline.C:
			return false
		case <-r.stop:
			return false
		}
	}
}

// FreeObjects deletes objects from the store.
func (r *Raylet) FreeObjects(list []ids.ObjectID) {
	r.owners.drop(list)
	r.spill.freed(list)
	for _, id := range list {
		_, _ = r.store.Delete(id)
	}
	r.xfer.Freed(list) // and the copies other nodes pulled
}

// objectIDs is a list of object IDs as received, malformed ones left out.
func objectIDs(req *pb.ObjectIDs) []ids.ObjectID {
	list := make([]ids.ObjectID, 0, len(req.Ids))
	for _, b := range req.Ids {
		if oid, err := ids.ObjectIDFrom(b); err == nil {
			list = append(list, oid)
		}
	}
	return list
}
