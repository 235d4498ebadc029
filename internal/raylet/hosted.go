package raylet

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// ownerGoneLocked reports DEAD (OWNER_DIED) the actor hosted by lease l,
// whose owner's connection c closed before it gave the lease back: the
// owner died, and the actor's worker goes with it. (An owner that ends
// cleanly gives its leases back first; a job's end, told before, wins.)
func (r *Raylet) ownerGoneLocked(c *rpc.Conn, l *leaseRec, after *[]func()) {
	if !l.dedicated || len(l.actorID) == 0 {
		return
	}
	owner := "at " + l.ownerAddr
	switch v := c.Value.(type) {
	case *workerProc:
		owner = fmt.Sprintf("pid %d", v.pid)
	case *job:
		owner = fmt.Sprintf("pid %d", v.pid)
	}
	e := &pb.ActorEvent{ActorId: l.actorID, State: tasktable.ActorDead, TimeUnixNs: time.Now().UnixNano(),
		DeathCause:   tasktable.CauseOwnerDied,
		DeathMessage: fmt.Sprintf("its owner (%s on node %s) died", owner, r.cfg.NodeName)}
	*after = append(*after, func() { r.cfg.Cluster.ReportEvents(&pb.StateEvents{Actors: []*pb.ActorEvent{e}}) })
}

// noteHostedAlive records, from the events passing through (its workers'
// own), which of the actors hosted here are ALIVE, and since when.
func (r *Raylet) noteHostedAlive(evs []*pb.ActorEvent) {
	var alive []*pb.ActorEvent
	for _, e := range evs {
		if e.State == tasktable.ActorAlive && len(e.ActorId) > 0 {
			alive = append(alive, e)
		}
	}
	if len(alive) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.leases {
		if !l.dedicated || l.actor == nil || l.aliveAt != 0 {
			continue
		}
		for _, e := range alive {
			if string(e.ActorId) == string(l.actorID) && (len(e.WorkerId) == 0 || string(e.WorkerId) == string(l.w.id[:])) {
				l.aliveAt = e.TimeUnixNs
			}
		}
	}
}

// HostedActors are the actors the live workers of this node host, as a
// node tells a control store when it registers (again): a control store
// restarted without its tables then lists them, and finds the named ones
// by name (a detached one at its worker), again. An actor is ALIVE once
// its worker said so, PENDING_CREATION before.
func (r *Raylet) HostedActors() []*pb.HostedActor {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*pb.HostedActor
	for _, l := range r.leases {
		if !l.dedicated || l.actor == nil || len(l.actorID) == 0 || l.w == nil || l.w.dead {
			continue
		}
		a := proto.Clone(l.actor).(*pb.ActorName)
		a.ActorId = l.actorID
		st := &pb.ActorEvent{ActorId: l.actorID, State: tasktable.ActorPending, TimeUnixNs: l.granted.UnixNano(),
			JobId: a.JobId, NodeId: r.cfg.NodeName, WorkerId: l.w.id[:], Pid: int32(l.w.pid), Resources: l.res}
		if l.aliveAt != 0 {
			st.State, st.TimeUnixNs = tasktable.ActorAlive, l.aliveAt
			if a.Detached {
				a.WorkerAddr = l.w.addr
			}
		}
		h := &pb.HostedActor{Actor: a, State: st}
		if err := gcs.CheckHostedActor(h); err != nil {
			r.log.Warn("hosted actor left out of the node's registration", "actor", fmt.Sprintf("%x", l.actorID), "err", err)
			continue
		}
		out = append(out, h)
	}
	return out
}

// ownerGoneBeforeCreation reports DEAD (OWNER_DIED) the detached actor
// whose lease request req was still waiting here when its owner's
// connection c closed: nobody will create it, and its name, registered
// before, is freed. (A detached actor is spared its job's end, so nothing
// else would say so; the others die with their job.)
func (r *Raylet) ownerGoneBeforeCreation(c *rpc.Conn, req *pb.RequestLease, after *[]func()) {
	if !req.Dedicated || !req.Detached || len(req.ActorId) == 0 {
		return
	}
	owner := "at " + req.OwnerAddr
	switch v := c.Value.(type) {
	case *workerProc:
		owner = fmt.Sprintf("pid %d", v.pid)
	case *job:
		owner = fmt.Sprintf("pid %d", v.pid)
	}
	id := req.ActorId
	e := &pb.ActorEvent{ActorId: id, State: tasktable.ActorDead, TimeUnixNs: time.Now().UnixNano(),
		DeathCause:   tasktable.CauseOwnerDied,
		DeathMessage: fmt.Sprintf("its owner (%s, node %s) died before it was created", owner, r.cfg.NodeName)}
	*after = append(*after, func() {
		r.cfg.Cluster.ReportEvents(&pb.StateEvents{Actors: []*pb.ActorEvent{e}})
		r.cfg.Cluster.ActorGone(id)
	})
}
