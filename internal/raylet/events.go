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
	if r.cfg.Cluster != nil {
		r.cfg.Cluster.ReportEvents(b)
		return
	}
	for _, e := range b.Tasks {
		if e.JobId == "" {
			e.JobId = r.cfg.EmbeddedJob
		}
	}
	for _, e := range b.Actors {
		if e.JobId == "" {
			e.JobId = r.cfg.EmbeddedJob
		}
	}
	r.table.Report(b)
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
func (r *Raylet) Table() *tasktable.Table { return r.table }

// serveState answers the state queries of an embedded cluster (MListTasks,
// MListActors, MListNodes, MListJobs), or passes the first two to the
// control store. It reports false for other methods.
func (r *Raylet) serveState(c *rpc.Conn, m rpc.Method, id uint64, body []byte) bool {
	switch m {
	case rpc.MListTasks, rpc.MListActors:
		q := &pb.StateQuery{}
		if err := unmarshal(body, q); err != nil {
			_ = c.ReplyError(id, err.Error())
			return true
		}
		if r.cfg.Cluster == nil {
			if m == rpc.MListTasks {
				_ = c.Reply(id, r.table.Tasks(q))
			} else {
				_ = c.Reply(id, r.table.Actors(q))
			}
			return true
		}
		r.procs.Add(1) // the control store is another process: not on the read loop
		go func() {
			defer r.procs.Done()
			ctx, cancel := context.WithTimeout(context.Background(), stateQueryTimeout)
			defer cancel()
			l, err := r.cfg.Cluster.ListState(ctx, m, q)
			if err != nil {
				_ = c.ReplyError(id, err.Error())
				return
			}
			_ = c.Reply(id, l)
		}()
	case rpc.MListNodes:
		if r.cfg.Cluster != nil {
			_ = c.ReplyError(id, "raylet: ask the control store for the nodes of a cluster")
			return true
		}
		_ = c.Reply(id, &pb.NodeList{Nodes: []*pb.NodeInfo{r.selfInfo()}})
	case rpc.MListJobs:
		if r.cfg.Cluster != nil {
			_ = c.ReplyError(id, "raylet: ask the control store for the jobs of a cluster")
			return true
		}
		_ = c.Reply(id, &pb.JobList{Jobs: []*pb.JobInfo{r.embeddedJob()}})
	default:
		return false
	}
	return true
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
