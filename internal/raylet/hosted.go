package raylet

import (
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// ReportHostedActors tells the control store, anew, of the detached
// actors whose workers run here: ALIVE, on this node, with their worker.
// A node calls it each time it registers, so that a control store that
// restarted without storage (in memory) still lists the actors that
// outlive their jobs. One that kept its tables knows them already, and
// the report changes no more than their last-seen time.
func (r *Raylet) ReportHostedActors() {
	now := time.Now().UnixNano()
	var evs []*pb.ActorEvent
	r.mu.Lock()
	for _, l := range r.leases {
		if !l.detached || len(l.actorID) == 0 || l.w == nil || l.w.dead || l.w.conn == nil {
			continue
		}
		evs = append(evs, &pb.ActorEvent{ActorId: l.actorID, State: tasktable.ActorAlive, TimeUnixNs: now, JobId: l.w.job,
			NodeId: r.cfg.NodeName, WorkerId: l.w.id[:], Pid: int32(l.w.pid), Detached: true})
	}
	r.mu.Unlock()
	if len(evs) > 0 {
		r.cfg.Cluster.ReportEvents(&pb.StateEvents{Actors: evs})
	}
}

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
