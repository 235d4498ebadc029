package raylet

import (
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// StateDraining is a node's state in the cluster view while it is drained
// (rayo drain; see the control store's DrainNode).
const StateDraining = "DRAINING"

// drainState is the raylet's side of a drain: it grants no new leases,
// sends the requests it gets to other nodes, and says it is done (Drained)
// when its leases have all ended or the deadline has passed.
type drainState struct {
	on       bool
	deadline time.Time
	idle     chan struct{} // closed when the last lease ends
	done     chan struct{} // closed when the node may exit: Drained
	timedOut bool
	note     string // what became of the objects held here (handover.go)
}

// Drained is closed when a drain of this node has ended: every lease it
// had is over, or the drain's deadline passed (the work still running is
// then killed with the raylet when it closes, and retried elsewhere by
// its owners). The node's daemon exits then.
func (r *Raylet) Drained() <-chan struct{} { return r.drain.done }

// DrainTimedOut says whether the drain ended at its deadline with work
// still running.
func (r *Raylet) DrainTimedOut() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain.timedOut
}

// viewOfSelfLocked reads this node's own record in a cluster view: a
// DRAINING state starts the drain.
func (r *Raylet) viewOfSelfLocked(n *pb.NodeInfo, after *[]func()) {
	if n.State != StateDraining || r.drain.on {
		return
	}
	r.drain.on = true
	r.draining = true
	r.drain.deadline = time.UnixMilli(n.DrainDeadlineUnixMs)
	r.log.Info("draining: no new leases; waiting for the running work", "leases", len(r.leases), "deadline", r.drain.deadline)
	// The requests waiting here go elsewhere.
	waiting := r.pending
	r.pending = nil
	for _, w := range waiting {
		w := w
		*after = append(*after, func() { r.placeRequest(w.req, w.owner, w.cb, true) })
	}
	r.checkDrainedLocked()
	idle, done, stop, deadline := r.drain.idle, r.drain.done, r.stop, r.drain.deadline
	wait := time.Until(deadline)
	r.drainWG.Add(1)
	go func() {
		defer r.drainWG.Done()
		t := time.NewTimer(wait)
		defer t.Stop()
		// What the node holds already moves while its work runs (within
		// the deadline), so that a deadline passing with work still
		// running loses only what that work made.
		first := r.handOver(deadline, nil)
		select {
		case <-idle:
		case <-stop:
			return
		case <-t.C:
			r.mu.Lock()
			r.drain.timedOut = true
			n := len(r.leases)
			r.mu.Unlock()
			r.log.Warn("drain deadline passed; the running work is killed", "leases", n)
		}
		// Then what the work made since, within the deadline.
		res := first.add(r.handOver(deadline, first.done))
		for id, why := range res.failed {
			r.log.Warn("draining: object not handed over", "object", id.String(), "why", why)
		}
		note := res.note()
		if note != "" {
			r.log.Info("draining: objects handed over", "moved", res.moved, "bytes", res.movedBytes, "not_moved", len(res.failed), "owned_here", res.local)
		}
		r.mu.Lock()
		r.drain.note = note
		r.mu.Unlock()
		close(done)
	}()
}

// checkDrainedLocked closes drain.idle once a draining node has no lease.
func (r *Raylet) checkDrainedLocked() {
	if !r.drain.on || len(r.leases) > 0 {
		return
	}
	select {
	case <-r.drain.idle:
	default:
		close(r.drain.idle)
	}
}

// placeDrainingLocked sends a lease request that reached a draining node
// to the other node with the most room, as a full node would.
func (r *Raylet) placeDrainingLocked(req *pb.RequestLease) (string, error) {
	res := req.Resources
	if p := r.roomiestLocked(res, true); p != nil {
		take(p.avail, res)
		return p.addr, nil
	}
	if p := r.roomiestLocked(res, false); p != nil {
		return p.addr, nil // wait there
	}
	if r.launchableLocked(res) {
		return "", errAwaitNode
	}
	return "", infeasible(fmt.Sprintf("this node is draining and no other node has %s", describeRes(res)))
}
