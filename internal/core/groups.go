package core

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Tasks and actors in a placement group ask for its bundles' resources
// (see placement.Demand). Until the group is placed no node has them: the
// raylet says so (LeaseReply.group_missing), and the owner waits for the
// group, then asks again. A removed group fails what waits for it.

// maxGroupTries bounds how often a lease request finds its group created
// and still no node holding its bundle (the cluster's view lags a
// commit by a heartbeat at most).
const maxGroupTries = 40

// PlacementGroup passes a placement group request to the raylet.
func (rt *Runtime) PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	if req.Op == placement.OpCreate && req.Group != nil && req.Group.JobId == "" {
		req.Group.JobId = rt.cfg.Job
	}
	return rt.cfg.Raylet.PlacementGroup(ctx, req)
}

// WaitGroup waits until the group is created or removed (or ctx ends) and
// returns it as it is then.
func (rt *Runtime) WaitGroup(ctx context.Context, id []byte) (*pb.PlacementGroup, error) {
	for {
		step := 10 * time.Second
		if d, ok := ctx.Deadline(); ok && time.Until(d) < step {
			step = max(time.Until(d), time.Millisecond)
		}
		r, err := rt.PlacementGroup(ctx, &pb.PlacementGroupRequest{Op: placement.OpWait, PlacementGroupId: id, TimeoutMs: step.Milliseconds()})
		switch {
		case err != nil && ctx.Err() != nil:
			// Ended before the reply: say how the group is, for the error.
			gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			if r, gerr := rt.PlacementGroup(gctx, &pb.PlacementGroupRequest{Op: placement.OpGet, PlacementGroupId: id}); gerr == nil && len(r.Groups) == 1 {
				return r.Groups[0], ctx.Err()
			}
			return nil, ctx.Err()
		case err != nil:
			return nil, err
		case r.Error != "":
			return nil, fmt.Errorf("placement group %x: %s", id, r.Error)
		case len(r.Groups) != 1:
			return nil, fmt.Errorf("placement group %x: the reply names %d groups", id, len(r.Groups))
		}
		g := r.Groups[0]
		if g.State == placement.StateCreated || g.State == placement.StateRemoved {
			return g, nil
		}
		if err := ctx.Err(); err != nil {
			return g, err
		}
	}
}

// askGroupLease asks for a lease in a placement group, waiting for the
// group when no node holds its bundle yet.
func (ts *taskSubmitter) askGroupLease(req *pb.RequestLease, tries int, cb func(RayletClient, *pb.LeaseReply, error)) {
	ts.askLeaseAt(nil, "", req, 0, func(rc RayletClient, r *pb.LeaseReply, err error) {
		if err != nil || !r.GroupMissing {
			cb(rc, r, err)
			return
		}
		if !ts.rt.goroutine("wait placement group", func() { ts.groupMissing(req, tries, cb) }) {
			cb(nil, nil, ErrShutdown)
		}
	})
}

func (ts *taskSubmitter) groupMissing(req *pb.RequestLease, tries int, cb func(RayletClient, *pb.LeaseReply, error)) {
	id := hex.EncodeToString(req.PlacementGroup)
	g, err := ts.rt.WaitGroup(ts.rt.bg, req.PlacementGroup)
	switch {
	case err != nil && ts.rt.bg.Err() != nil:
		cb(nil, nil, ErrShutdown)
		return
	case err != nil:
		cb(nil, &pb.LeaseReply{Error: err.Error()}, nil)
		return
	case g.State == placement.StateRemoved:
		cb(nil, &pb.LeaseReply{Error: fmt.Sprintf("placement group %s was removed", id)}, nil)
		return
	case tries >= maxGroupTries:
		cb(nil, &pb.LeaseReply{Error: fmt.Sprintf("placement group %s is created, but no node holds the bundle the task asks for (%s)", id, describeDemand(req.Resources))}, nil)
		return
	}
	if tries > 0 {
		select {
		case <-time.After(min(5*time.Millisecond<<min(tries, 6), 250*time.Millisecond)):
		case <-ts.rt.bg.Done():
			cb(nil, nil, ErrShutdown)
			return
		}
	}
	ts.askGroupLease(req, tries+1, cb)
}

func describeDemand(res []*pb.Resource) string {
	s := ""
	for i, x := range res {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s=%g", x.Name, x.Quantity)
	}
	return s
}

// SetCaptureGroup names the placement group the tasks this process submits
// go to, by default, from now on (nil: none): the group of the task it
// runs, when that task captures its children.
func (rt *Runtime) SetCaptureGroup(id []byte) {
	if len(id) == 0 {
		rt.capture.Store(nil)
		return
	}
	rt.capture.Store(&id)
}

// CaptureGroup is the placement group set by SetCaptureGroup, or nil.
func (rt *Runtime) CaptureGroup() []byte {
	if p := rt.capture.Load(); p != nil {
		return *p
	}
	return nil
}
