package core

import (
	"context"
	"fmt"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ErrMovedByOtherJob refuses an ObjectsMoved sent with another job's
// credential: only this job's processes and the cluster's daemons may say
// where this owner's objects are.
var ErrMovedByOtherJob = fmt.Errorf("core: objects moved: %w", rpc.ErrClusterOnly)

// serveObjectsMoved takes the news, from a node being drained (its
// raylet), that the primary copies of objects this process owns moved
// from that node to another: their locators point there from now on, so
// that reads (here, and by borrowers asking again after their copy was
// lost) find them without a rebuild. The reply lists the objects this
// process does not hold at from (freed, rebuilt elsewhere, not its own):
// the new node frees those.
func (ot *objectTable) serveObjectsMoved(ctx context.Context, req *pb.ObjectsMoved) (*pb.ObjectIDs, error) {
	if job := rpc.JobOf(ctx); job != "" && job != ot.rt.ownJob() {
		return nil, fmt.Errorf("%w (job %s)", ErrMovedByOtherJob, job)
	}
	if req.From == "" || req.To == "" {
		return nil, fmt.Errorf("core: objects moved: from %q to %q: both nodes are needed", req.From, req.To)
	}
	gone := &pb.ObjectIDs{}
	ot.mu.Lock()
	defer ot.mu.Unlock()
	for _, b := range req.Ids {
		id, err := ids.ObjectIDFrom(b)
		if err != nil {
			return nil, fmt.Errorf("core: objects moved: %w", err)
		}
		obj := ot.byID[id]
		if obj == nil || !obj.owned || obj.state != stateReady || obj.loc == nil || !obj.loc.InStore || obj.loc.NodeAddr != req.From {
			gone.Ids = append(gone.Ids, b)
			continue
		}
		// A new locator, not a change to the old: readers compare
		// locators to tell a copy they lost from the current one.
		obj.loc = &pb.Locator{Size: obj.loc.Size, InStore: true, Contained: obj.loc.Contained, NodeAddr: req.To}
	}
	return gone, nil
}

// ownJob is the job of this process's credential ("" without one).
func (rt *Runtime) ownJob() string {
	if !pki.IsJobCredential(rt.cfg.Token) {
		return ""
	}
	job, _ := pki.JobOfCredential(rt.cfg.Token)
	return job
}
