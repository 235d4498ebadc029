package raylet

import (
	"context"
	"fmt"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/raylet/transfer"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ErrObjectLost means the node that held an object no longer has it, or
// cannot be reached: the object must be rebuilt (or fetched elsewhere). It
// is objstore.ErrObjectLost (rayo.ErrObjectLost), which owners answer by
// rebuilding the object.
var ErrObjectLost = objstore.ErrObjectLost

// newTransfers makes the raylet's side of object transfers (package
// transfer), which it owns.
func (r *Raylet) newTransfers() *transfer.Manager {
	return transfer.New(transfer.Config{
		Store: r.store, Arena: r.arena, Host: transferHost{r}, Token: r.cfg.Token,
		Log: r.log, Metrics: r.metrics, ErrClosed: ErrClosed, Go: r.goTracked,
	})
}

// Pull copies an object of size bytes (its exact size) from the raylet at
// from (a TCP address) into this node's store, and returns its offset here
// (see transfer.Manager.Pull).
func (r *Raylet) Pull(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	return r.xfer.Pull(ctx, id, from, size)
}

// servePull pulls an object for a worker or driver of this node, off the
// connection's read loop.
func (r *Raylet) servePull(rctx context.Context, req *pb.PullObject, reply func(*pb.CreateObjectReply, error)) {
	c := rpc.ConnOf(rctx)
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, err)
		return
	}
	r.mu.Lock()
	if err := r.fencedLocked(); err != nil {
		r.mu.Unlock()
		reply(nil, err)
		return
	}
	if r.closed {
		r.mu.Unlock()
		reply(nil, ErrClosed)
		return
	}
	r.procs.Add(2)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The requester going away, or the raylet closing, cancels it.
		defer r.procs.Done()
		select {
		case <-c.Done():
		case <-r.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	go func() {
		defer r.procs.Done()
		defer cancel()
		reply(objectReply(r.pullPinned(ctx, c, oid, req.From, req.Size)))
	}()
}

// pullPinned pulls id and pins the copy for the process on c (nil: this
// one) until it unpins or goes. A copy evicted by another pull before it
// was pinned is pulled again.
func (r *Raylet) pullPinned(ctx context.Context, c *rpc.Conn, id ids.ObjectID, from string, size int64) (int64, error) {
	for {
		if _, err := r.Pull(ctx, id, from, size); err != nil {
			return 0, err
		}
		if off, ok := r.spill.pinIfHere(c, id); ok {
			return off, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("raylet: pull %s: %w", id, context.Cause(ctx))
		}
	}
}

// goTracked runs f on a goroutine that Close waits for, unless the raylet
// is closed.
func (r *Raylet) goTracked(f func()) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.procs.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.procs.Done()
		f()
	}()
	return true
}

// transferHost is what the transfers ask of their raylet: its pins, its
// spilling, its seals and its frees.
type transferHost struct{ r *Raylet }

func (h transferHost) WithPins(f func(pinned func(ids.ObjectID) bool)) {
	sp := h.r.spill
	sp.mu.Lock()
	defer sp.mu.Unlock()
	f(func(id ids.ObjectID) bool { return sp.pins[id] > 0 })
}

func (h transferHost) CreateSpilling(ctx context.Context, id ids.ObjectID, size int64) (int64, error) {
	return h.r.spill.create(ctx, id, size)
}

func (h transferHost) PinInMemory(id ids.ObjectID) (off, size int64, unpin func(), ok bool) {
	sp := h.r.spill
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if off, size, ok = h.r.store.Lookup(id); !ok {
		return 0, 0, nil, false
	}
	sp.pins[id]++
	return off, size, func() { sp.unpinOne(id) }, true
}

func (h transferHost) ReadSpilled(id ids.ObjectID, off, length int64) ([]byte, bool, error) {
	return h.r.spill.readSpilled(id, off, length)
}

func (h transferHost) WaitSealed(id ids.ObjectID) bool { return h.r.waitSealed(id) }

func (h transferHost) Free(list []ids.ObjectID) { h.r.FreeObjects(list) }
