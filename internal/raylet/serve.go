package raylet

import (
	"context"
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// newMux is how the raylet serves its workers, drivers and other nodes:
// one typed function per method (rpc.Mux decodes and replies).
func (r *Raylet) newMux() *rpc.Mux {
	mx := rpc.NewMux("raylet")
	rpc.HandleNotify(mx, rpc.ReportEvents, func(_ context.Context, b *pb.StateEvents) { r.ReportEvents(b) })
	rpc.Handle(mx, rpc.RegisterWorker, func(ctx context.Context, req *pb.RegisterWorker) (*pb.RegisterWorkerReply, error) {
		if err := r.register(rpc.ConnOf(ctx), req); err != nil {
			return nil, err
		}
		return &pb.RegisterWorkerReply{NodeId: r.nodeID[:], StorePath: r.arena.Path(), SessionDir: r.cfg.SessionDir}, nil
	})
	rpc.HandleAsync(mx, rpc.RequestLease, func(ctx context.Context, req *pb.RequestLease, reply func(*pb.LeaseReply, error)) {
		if job := rpc.JobOf(ctx); job != "" && job != req.JobId {
			reply(nil, fmt.Errorf("raylet: %w: job %s's credential may not lease workers of job %q", ErrOtherJob, job, req.JobId))
			return
		}
		r.requestLease(req, rpc.ConnOf(ctx), reply)
	})
	rpc.HandleNotify(mx, rpc.ReturnLease, func(_ context.Context, req *pb.ReturnLease) { r.ReturnLease(req) })
	rpc.HandleNotify(mx, rpc.Blocked, func(_ context.Context, req *pb.BlockedChange) {
		if wid, err := ids.WorkerIDFrom(req.WorkerId); err == nil {
			r.SetBlocked(wid, req.Blocked)
		}
	})
	rpc.HandleAsync(mx, rpc.CreateObject, r.serveCreate)
	rpc.HandleAsync(mx, rpc.PinObject, r.servePin)
	rpc.HandleNotify(mx, rpc.UnpinObjects, func(ctx context.Context, req *pb.ObjectIDs) {
		r.spill.unpin(rpc.ConnOf(ctx), objectIDs(req))
	})
	rpc.HandleNotify(mx, rpc.SealObjects, r.serveSeal)
	rpc.HandleNotify(mx, rpc.FreeObjects, r.serveFree)
	rpc.HandleNotify(mx, rpc.ActorAlive, func(_ context.Context, req *pb.ActorName) { r.ActorAlive(req.ActorId, req.WorkerAddr) })
	rpc.HandleAsync(mx, rpc.JobDone, func(ctx context.Context, _ *pb.Empty, reply func(*pb.Empty, error)) {
		// The driver is about to leave: pass on its workers' last output
		// first, off the read loop.
		j, _ := rpc.ConnOf(ctx).Value.(*job)
		if j != nil {
			r.mu.Lock()
			j.done = true
			r.mu.Unlock()
		}
		go func() {
			if j != nil {
				r.drainLogs(j.id)
			}
			reply(&pb.Empty{}, nil)
		}()
	})
	rpc.HandleAsync(mx, rpc.FlushOutput, r.serveFlushOutput)
	rpc.Handle(mx, rpc.RegisterJob, func(ctx context.Context, req *pb.JobInfo) (*pb.Status, error) {
		if job := rpc.JobOf(ctx); job != "" && job != req.JobId {
			// A job's credential registers its own job only.
			return nil, fmt.Errorf("raylet: %w: job %s's credential may not register job %q", ErrOtherJob, job, req.JobId)
		}
		if err := r.registerJob(rpc.ConnOf(ctx), req); err != nil {
			return nil, err
		}
		return &pb.Status{}, nil
	})
	rpc.HandleAsync(mx, rpc.PlacementGroup, r.servePlacementGroup)
	rpc.HandleAsync(mx, rpc.PullObject, r.servePull)
	rpc.HandleAsync(mx, rpc.TakeObject, r.serveTake)
	rpc.HandleRaw(mx, rpc.ReadChunk, r.xfer.ServeReadChunk)
	rpc.HandleAsync(mx, rpc.RegisterActorName, func(_ context.Context, req *pb.ActorName, reply func(*pb.ActorNameReply, error)) {
		r.controlStoreCall(func(ctx context.Context) { reply(nameReply(req, r.RegisterActorName(ctx, req)), nil) })
	})
	rpc.HandleAsync(mx, rpc.LookupActorName, func(_ context.Context, req *pb.ActorName, reply func(*pb.ActorNameReply, error)) {
		r.controlStoreCall(func(ctx context.Context) { reply(nameReply(r.LookupActorName(ctx, req.Namespace, req.Name)), nil) })
	})
	r.handleState(mx)
	r.handleStats(mx)
	return mx
}

// controlStoreCall runs f with a deadline, off the read loop: the control
// store may be another process.
func (r *Raylet) controlStoreCall(f func(ctx context.Context)) {
	r.procs.Add(1)
	go func() {
		defer r.procs.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f(ctx)
	}()
}
