package raylet

import (
	"fmt"
	"time"

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
