package raylet

import (
	"errors"
	"fmt"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Fencing: a node the control store declared dead has had its work
// retried elsewhere; whatever it still ran would run twice. Its node
// (internal/node) calls Fence as soon as it learns it, then closes it.

// ErrFenced is the refusal of a fenced raylet (errors.Is).
var ErrFenced = errors.New("raylet: this node was declared dead by the cluster (fenced)")

// fencedError is a fenced raylet's refusal, with why.
type fencedError struct{ node, reason string }

func (e *fencedError) Error() string {
	return fmt.Sprintf("raylet: node %s was declared dead by the cluster (fenced): %s", e.node, e.reason)
}

func (e *fencedError) Is(target error) bool { return target == ErrFenced }

// Fence stops this node's work at once, for reason: it refuses new
// leases and pulls, fails the lease requests waiting here, tells the
// drivers attached to it (rpc.MNodesDead naming this very node) and
// kills every worker.
// Close must still follow. It is idempotent.
func (r *Raylet) Fence(reason string) {
	r.mu.Lock()
	if r.closed || r.fenced != nil {
		r.mu.Unlock()
		return
	}
	ferr := &fencedError{node: r.nodeID.Name(), reason: reason}
	r.fenced = ferr
	pending := append(r.pending, r.viewWait...)
	for _, ws := range r.jobWait {
		pending = append(pending, ws...)
	}
	r.pending, r.viewWait, r.jobWait = nil, nil, make(map[string][]*leaseReq)
	var drivers []*rpc.Conn
	for _, j := range r.jobs {
		if !j.remote && j.conn != nil {
			drivers = append(drivers, j.conn)
		}
	}
	var workers []*workerProc
	for _, w := range r.workers {
		if !w.dead && w.proc != nil {
			workers = append(workers, w)
		}
	}
	r.mu.Unlock()
	r.log.Error("node fenced: stopping its work", "reason", reason, "workers", len(workers), "drivers", len(drivers))
	for _, p := range pending {
		p.cb(nil, ferr)
	}
	self := &pb.NodeList{Nodes: []*pb.NodeInfo{{NodeId: r.nodeID[:], Address: r.TCPAddr(), State: "DEAD", DeathReason: reason}}}
	for _, c := range drivers {
		// Written out before the node closes the connection, which the
		// driver reads to its end.
		_ = c.Notify(rpc.MNodesDead, self)
	}
	for _, w := range workers {
		_ = w.proc.Kill()
	}
}

// fencedLocked is the fenced raylet's refusal, or nil. mu is held.
func (r *Raylet) fencedLocked() error {
	if r.fenced == nil {
		return nil
	}
	return r.fenced
}

// noteDeadLocked records the nodes view has DEAD. mu is held.
func (r *Raylet) noteDeadLocked(v *pb.ClusterView) {
	for _, n := range v.Nodes {
		if n.State != "DEAD" {
			continue
		}
		if id, err := ids.NodeIDFrom(n.NodeId); err == nil {
			if r.deadNodes == nil {
				r.deadNodes = make(map[string]string)
			}
			r.deadNodes[id.Name()] = n.DeathReason
		}
	}
}

// ownerDeadLocked refuses a lease whose owner runs on a node the cluster
// declared dead: that node is fenced, its owners' work is written off. mu
// is held.
func (r *Raylet) ownerDeadLocked(req *pb.RequestLease) error {
	_, _, node := rpc.SplitEndpoint(req.OwnerAddr)
	if node == "" || node == r.cfg.NodeName {
		return nil
	}
	if why, dead := r.deadNodes[node]; dead {
		return fmt.Errorf("%w: the lease's owner %s runs on node %s, which the cluster declared dead (%s)", ErrOwnerNodeDead, req.OwnerAddr, node, why)
	}
	return nil
}

// ErrOwnerNodeDead refuses a lease to an owner on a node declared dead.
var ErrOwnerNodeDead = errors.New("raylet: lease refused")
