package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Work across nodes: leases granted by other nodes' raylets after a
// spillback, and objects freed where they live.

// maxLeaseFailures bounds how often a lease request is sent back after
// the node it was sent on to could not be reached (its cluster view was
// behind: the node had just died).
const maxLeaseFailures = 12

// askLease requests a worker for req, following a spillback to another
// node, and calls cb with the raylet that granted it (nil: this node's).
// A node that cannot be reached sends the request back to this node's
// raylet, after a pause that grows, until its view of the cluster has
// caught up.
func (ts *taskSubmitter) askLease(req *pb.RequestLease, cb func(rc RayletClient, r *pb.LeaseReply, err error)) {
	if len(req.PlacementGroup) > 0 {
		ts.askGroupLease(req, 0, cb)
		return
	}
	ts.askLeaseAt(nil, "", req, 0, cb)
}

func (ts *taskSubmitter) askLeaseAt(rc RayletClient, addr string, req *pb.RequestLease, fails int, cb func(RayletClient, *pb.LeaseReply, error)) {
	target := rc
	if target == nil {
		target = ts.rt.cfg.Raylet
	}
	target.RequestLease(req, func(r *pb.LeaseReply, err error) {
		switch {
		case err != nil && rc != nil:
			ts.rt.peers.forgetRaylet(addr, nil)
			ts.retryLease(req, fails+1, cb, err)
		case err != nil && !ts.rt.closed.Load():
			// This node's raylet did not answer (the request or its reply
			// was lost): ask again, within maxLeaseFailures.
			ts.retryLease(req, fails+1, cb, err)
		case err == nil && r.SpillTo != "":
			ts.rt.goroutine("spillback", func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				remote, derr := ts.rt.peers.raylet(ctx, r.SpillTo)
				if derr != nil {
					ts.retryLease(req, fails+1, cb, derr)
					return
				}
				next := cloneLease(req)
				next.Spilled = true // granted there or queued there, never sent on
				ts.askLeaseAt(remote, r.SpillTo, next, fails, cb)
			})
		default:
			cb(rc, r, err)
		}
	})
}

// retryLease asks this node's raylet again, after a pause.
func (ts *taskSubmitter) retryLease(req *pb.RequestLease, fails int, cb func(RayletClient, *pb.LeaseReply, error), last error) {
	if fails > maxLeaseFailures {
		cb(nil, nil, fmt.Errorf("no node could be reached for the task after %d tries: %w", fails, last))
		return
	}
	back := cloneLease(req)
	back.Spilled = false
	pause := min(10*time.Millisecond<<fails, 500*time.Millisecond)
	// The pause is for the cluster view to catch up.
	ts.rt.after("retry lease", pause, func() { ts.askLeaseAt(nil, "", back, fails, cb) })
}

func cloneLease(req *pb.RequestLease) *pb.RequestLease {
	return proto.Clone(req).(*pb.RequestLease)
}

// errNoCluster: this process was not set up to reach other nodes.
var errNoCluster = errors.New("core: this process cannot reach other nodes")

// raylet is the raylet that granted the lease.
func (l *lease) raylet(rt *Runtime) RayletClient {
	if l.rc != nil {
		return l.rc
	}
	return rt.cfg.Raylet
}

// freeAt records that a stored object is to be deleted where it lives.
func (a *actions) freeAt(id ids.ObjectID, loc *pb.Locator) {
	if a.free == nil {
		a.free = make(map[string][]ids.ObjectID)
	}
	a.free[loc.NodeAddr] = append(a.free[loc.NodeAddr], id)
}

// freeObjects deletes stored objects on the nodes that hold them.
func (ot *objectTable) freeObjects(byNode map[string][]ids.ObjectID) {
	for node, list := range byNode {
		if node == "" || node == ot.rt.cfg.NodeAddr {
			ot.rt.cfg.Raylet.FreeObjects(list)
			continue
		}
		ot.rt.goroutine("free remote objects", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if rc, err := ot.rt.peers.raylet(ctx, node); err == nil {
				rc.FreeObjects(list)
			}
		})
	}
}

// NodesDead takes the news, pushed by this node's raylet from the control
// store, that nodes died: the connections to their raylets and to the
// processes on them are closed, so that what waits on them (tasks running
// there, leases, actors) fails over at once, as when the connections
// break, even if the node went silent rather than closing them.
func (rt *Runtime) NodesDead(list *pb.NodeList) {
	if reason, self := rt.selfFenced(list); self {
		rt.Fence(rt.cfg.Node, reason) // our own node was declared dead: its raylet was fenced
		return
	}
	dead := make(map[string]bool)
	addrs := make(map[string]bool)
	for _, n := range list.Nodes {
		if id, err := ids.NodeIDFrom(n.NodeId); err == nil {
			dead[id.Name()] = true
		}
		addrs[n.Address] = true
	}
	closers := rt.peers.closers(dead, addrs)
	for _, f := range closers {
		rt.goroutine("close dead node", f)
	}
}

// RayletPushes registers on mx what a node's raylet pushes to the owners
// connected to it (the processes on the node, and owners elsewhere
// holding leases there): nodes declared dead (rpc.NodesDead), and a
// worker its memory monitor is about to kill (rpc.WorkerOOM, answered
// once the news is taken). The news goes to the runtime rt returns; while
// it returns nil (a process whose runtime is not made yet, which owns
// nothing), it is taken and dropped.
func RayletPushes(mx *rpc.Mux, rt func() *Runtime) {
	rpc.HandleNotify(mx, rpc.NodesDead, func(_ context.Context, list *pb.NodeList) {
		if r := rt(); r != nil {
			r.NodesDead(list)
		}
	})
	rpc.Handle(mx, rpc.WorkerOOM, func(_ context.Context, k *pb.WorkerKilled) (*pb.Empty, error) {
		if r := rt(); r != nil {
			r.WorkerKilled(k)
		}
		return &pb.Empty{}, nil
	})
}
