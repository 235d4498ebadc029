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
func (rt *Runtime) askLease(req *pb.RequestLease, cb func(rc RayletClient, r *pb.LeaseReply, err error)) {
	if len(req.PlacementGroup) > 0 {
		rt.askGroupLease(req, 0, cb)
		return
	}
	rt.askLeaseAt(nil, "", req, 0, cb)
}

func (rt *Runtime) askLeaseAt(rc RayletClient, addr string, req *pb.RequestLease, fails int, cb func(RayletClient, *pb.LeaseReply, error)) {
	target := rc
	if target == nil {
		target = rt.cfg.Raylet
	}
	target.RequestLease(req, func(r *pb.LeaseReply, err error) {
		switch {
		case err != nil && rc != nil:
			rt.peers.forgetRaylet(addr, nil)
			rt.retryLease(req, fails+1, cb)
		case err == nil && r.SpillTo != "":
			rt.goroutine("spillback", func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				remote, derr := rt.peers.raylet(ctx, r.SpillTo)
				if derr != nil {
					rt.retryLease(req, fails+1, cb)
					return
				}
				next := cloneLease(req)
				next.Spilled = true // granted there or queued there, never sent on
				rt.askLeaseAt(remote, r.SpillTo, next, fails, cb)
			})
		default:
			cb(rc, r, err)
		}
	})
}

// retryLease asks this node's raylet again, after a pause.
func (rt *Runtime) retryLease(req *pb.RequestLease, fails int, cb func(RayletClient, *pb.LeaseReply, error)) {
	if fails > maxLeaseFailures {
		cb(nil, nil, fmt.Errorf("no node could be reached for the task after %d tries", fails))
		return
	}
	back := cloneLease(req)
	back.Spilled = false
	pause := min(10*time.Millisecond<<fails, 500*time.Millisecond)
	// The pause is for the cluster view to catch up.
	rt.after("retry lease", pause, func() { rt.askLeaseAt(nil, "", back, fails, cb) })
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
func (rt *Runtime) freeObjects(byNode map[string][]ids.ObjectID) {
	for node, list := range byNode {
		if node == "" || node == rt.cfg.NodeAddr {
			rt.cfg.Raylet.FreeObjects(list)
			continue
		}
		rt.goroutine("free remote objects", func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if rc, err := rt.peers.raylet(ctx, node); err == nil {
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

// serveRaylet serves what another node's raylet pushes on the connection
// this process opened to it (a lease's owner is told of an out-of-memory
// kill there), replying once the news is taken.
func (rt *Runtime) serveRaylet(c *rpc.Conn, m rpc.Method, kind rpc.Kind, id uint64, body []byte) {
	rt.HandleRaylet(m, body)
	if kind == rpc.KindRequest {
		_ = c.Reply(id, &pb.Empty{})
	}
}

// HandleRaylet serves what a node's raylet pushes to the processes on it
// (see rpc.MNodesDead and rpc.MWorkerOOM); it ignores any other method.
// It has taken the news when it returns: a caller replying to a request
// replies after.
func (rt *Runtime) HandleRaylet(m rpc.Method, body []byte) {
	switch m {
	case rpc.MNodesDead:
		list := &pb.NodeList{}
		if rpc.Decode(body, list) == nil {
			if reason, self := rt.selfFenced(list); self {
				rt.Fence(rt.cfg.Node, reason) // our own node was declared dead
				return
			}
			rt.NodesDead(list)
		}
	case rpc.MWorkerOOM:
		k := &pb.WorkerKilled{}
		if rpc.Decode(body, k) == nil {
			rt.WorkerKilled(k)
		}
	}
}
