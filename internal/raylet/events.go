package raylet

import (
	"context"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// The state of tasks and actors: owners and workers report events to their
// raylet. A raylet alone (an embedded cluster) keeps them in its own table
// and answers the state API's queries as the control store would: tasks,
// actors, its one node and its one job. A raylet of a cluster passes them
// on to the control store, which answers those queries.

// stateQueryTimeout bounds a query passed on to the control store.
const stateQueryTimeout = 10 * time.Second

// ReportEvents takes a batch of events from a process of this node.
func (r *Raylet) ReportEvents(b *pb.StateEvents) {
	r.observeEvents(b)
	r.noteHostedAlive(b.Actors)
	r.cfg.Cluster.ReportEvents(b)
}

// observeEvents feeds the node's metrics from the tallies of its workers:
// how many task attempts ended in which state and how long they ran. Each
// attempt is tallied once, by the worker that ran it, so it counts on the
// node where it ran whoever owns it.
func (r *Raylet) observeEvents(b *pb.StateEvents) {
	if r.metrics == nil || b.Runs == nil {
		return
	}
	x := b.Runs
	r.metrics.AddRuns(x.Finished, x.Failed, x.ExecBuckets, x.ExecSeconds)
}

// Table is the raylet's table of tasks and actors (nil in a cluster, where
// the control store keeps it).
func (r *Raylet) Table() *tasktable.Table {
	if r.local == nil {
		return nil
	}
	return r.local.table
}

// handleState registers the state queries (MListTasks, MListActors), which
// the control store answers (this raylet's own, embedded), and the
// listings of nodes and jobs.
func (r *Raylet) handleState(mx *rpc.Mux) {
	list := func(m rpc.Method, q *pb.StateQuery, reply func(*pb.StateList, error)) {
		// The control store may be another process: not on the read loop.
		if !r.goTracked(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stateQueryTimeout)
			defer cancel()
			reply(r.cfg.Cluster.ListState(ctx, m, q))
		}) {
			reply(nil, ErrClosed)
		}
	}
	rpc.HandleAsync(mx, rpc.ListTasks, func(_ context.Context, q *pb.StateQuery, reply func(*pb.StateList, error)) {
		list(rpc.MListTasks, q, reply)
	})
	rpc.HandleAsync(mx, rpc.ListActors, func(_ context.Context, q *pb.StateQuery, reply func(*pb.StateList, error)) {
		list(rpc.MListActors, q, reply)
	})
	r.handleListing(mx)
}

// selfInfo is this node as the control store would list it.
func (r *Raylet) selfInfo() *pb.NodeInfo {
	total, avail, pending := r.Resources()
	return &pb.NodeInfo{
		NodeId: r.nodeID[:], Address: r.addr, Resources: total, Available: avail, Pending: pending,
		State: "ALIVE", LastHeartbeatUnixMs: time.Now().UnixMilli(), SessionDir: r.cfg.SessionDir, Head: true,
		ObjectStoreBytes: r.cfg.StoreCapacity, ObjectStoreSource: r.cfg.StoreSource,
	}
}

// embeddedJob is the job of an embedded cluster's driver.
func (r *Raylet) embeddedJob() *pb.JobInfo {
	return &pb.JobInfo{
		JobId: r.cfg.EmbeddedJob, Exe: r.cfg.WorkerExe, Args: r.cfg.WorkerArgs, State: "RUNNING",
		StartUnixMs: r.started.UnixMilli(), NodeId: r.nodeID[:], DriverAddr: r.cfg.DriverAddr,
	}
}
