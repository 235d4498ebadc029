package rayo

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// stateConn dials the embedded raylet, which answers the state queries.
func stateConn(t *testing.T) *rpc.Conn {
	t.Helper()
	c, err := rpc.Dial(context.Background(), filepath.Join(SessionDir(), "raylet.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitRecord polls the raylet's table until match finds a record (events
// are flushed in batches), and returns it.
func waitRecord[T any](t *testing.T, c *rpc.Conn, m rpc.Method, list func(*pb.StateList) []T, match func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := &pb.StateList{}
		if err := c.Call(context.Background(), m, &pb.StateQuery{}, l); err != nil {
			t.Fatal(err)
		}
		for _, r := range list(l) {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			var zero T
			t.Fatalf("no matching record of method %d within 10s (%d records)", m, len(list(l)))
			return zero
		}
		time.Sleep(20 * time.Millisecond) // events reach the table every 200 ms
	}
}

func tasksOf(l *pb.StateList) []*pb.TaskRecord   { return l.Tasks }
func actorsOf(l *pb.StateList) []*pb.ActorRecord { return l.Actors }

func TestTaskAndActorStatesAreListed(t *testing.T) {
	ctx := ctxT(t)
	c := stateConn(t)

	checkFinishedTaskListed(t, ctx, c)
	checkFailedTasksListed(t, ctx, c)
	rec := checkInfeasibleTaskListed(t, ctx, c)
	checkActorStatesListed(t, ctx, c)

	// The owner's and the worker's events merge in either order: the
	// worker's part (its pid, node, stack) is there once both arrived.
	// The node and the job, as the control store of a cluster lists them.
	nodes := &pb.NodeList{}
	if err := c.Call(ctx, rpc.MListNodes, &pb.Empty{}, nodes); err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].State != "ALIVE" {
		t.Fatalf("nodes: %v %v", nodes, err)
	}
	jobs := &pb.JobList{}
	if err := c.Call(ctx, rpc.MListJobs, &pb.Empty{}, jobs); err != nil || len(jobs.Jobs) != 1 || jobs.Jobs[0].JobId != rec.Task.JobId {
		t.Fatalf("jobs: %v %v (tasks carry job %q)", jobs, err, rec.Task.JobId)
	}
}

// checkFinishedTaskListed runs a task and checks that it is listed
// FINISHED, on this node, with a time for each state it went through.
func checkFinishedTaskListed(t *testing.T, ctx context.Context, c *rpc.Conn) {
	t.Helper()
	ok := add.Remote(V(40), V(2))
	if _, err := Get(ctx, ok); err != nil {
		t.Fatal(err)
	}
	rec := waitRecord(t, c, rpc.MListTasks, tasksOf, func(r *pb.TaskRecord) bool {
		return hex.EncodeToString(r.Task.TaskId) == ok.ID()[:32] && r.Task.State == "FINISHED" && r.Task.WorkerPid != 0 && r.StateTimesUnixNs["PENDING_ARGS_AVAIL"] != 0
	})
	if rec.Task.NodeId != NodeID() || rec.Task.WorkerPid == 0 || rec.Task.Type != "NORMAL_TASK" || rec.Task.JobId == "" {
		t.Errorf("finished task: %v", rec.Task)
	}
	for _, st := range []string{"PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING", "FINISHED"} {
		if rec.StateTimesUnixNs[st] == 0 {
			t.Errorf("no time for state %s: %v", st, rec.StateTimesUnixNs)
		}
	}
}

// checkFailedTasksListed runs a task that panics and one that returns an
// error, and checks that each is listed FAILED with its error.
func checkFailedTasksListed(t *testing.T, ctx context.Context, c *rpc.Conn) {
	t.Helper()
	bad := panics.Remote()
	if _, err := Get(ctx, bad); err == nil {
		t.Fatal("a panicking task succeeded")
	}
	rec := waitRecord(t, c, rpc.MListTasks, tasksOf, func(r *pb.TaskRecord) bool {
		return hex.EncodeToString(r.Task.TaskId) == bad.ID()[:32] && r.Task.State == "FAILED" && r.Task.WorkerPid != 0 && r.Task.Name != ""
	})
	if rec.Task.ErrorType != "TASK_PANIC" || !strings.Contains(rec.Task.Error, "boom from task") || !strings.Contains(rec.Task.Error, "goroutine") {
		t.Errorf("failed task's error %q (%s): want the panic and its stack", rec.Task.Error, rec.Task.ErrorType)
	}

	returned := fails.Remote(V("listed failure"))
	if _, err := Get(ctx, returned); err == nil {
		t.Fatal("a failing task succeeded")
	}
	rec = waitRecord(t, c, rpc.MListTasks, tasksOf, func(r *pb.TaskRecord) bool {
		return hex.EncodeToString(r.Task.TaskId) == returned.ID()[:32] && r.Task.State == "FAILED" && r.Task.WorkerPid != 0
	})
	if rec.Task.ErrorType != "TASK_EXECUTION_EXCEPTION" || !strings.HasPrefix(rec.Task.Error, "listed failure\nreturned by ") {
		t.Errorf("failed task's error %q (%s): want the error and the function that returned it", rec.Task.Error, rec.Task.ErrorType)
	}
}

// checkInfeasibleTaskListed submits a task no node can hold, checks that it
// is listed FAILED as unschedulable, and returns its record.
func checkInfeasibleTaskListed(t *testing.T, ctx context.Context, c *rpc.Conn) *pb.TaskRecord {
	t.Helper()
	never := add.Options(NumCPUs(1000)).Remote(V(1), V(2))
	if _, err := Get(ctx, never); err == nil {
		t.Fatal("an infeasible task succeeded")
	}
	rec := waitRecord(t, c, rpc.MListTasks, tasksOf, func(r *pb.TaskRecord) bool {
		return hex.EncodeToString(r.Task.TaskId) == never.ID()[:32] && r.Task.State == "FAILED"
	})
	if rec.Task.ErrorType != "TASK_UNSCHEDULABLE_ERROR" {
		t.Errorf("infeasible task listed as %s: %q", rec.Task.ErrorType, rec.Task.Error)
	}
	return rec
}

// checkActorStatesListed creates a named actor and checks that it is
// listed ALIVE, then, once killed, DEAD with the cause.
func checkActorStatesListed(t *testing.T, ctx context.Context, c *rpc.Conn) {
	t.Helper()
	a := newCounter.Options(Name("listed"), Namespace("events")).Remote()
	if _, err := Get(ctx, incr.Remote(a)); err != nil {
		t.Fatal(err)
	}
	alive := waitRecord(t, c, rpc.MListActors, actorsOf, func(r *pb.ActorRecord) bool {
		return r.Actor.Name == "listed" && r.Actor.State == "ALIVE" && r.Actor.Pid != 0
	})
	if alive.Actor.NodeId != NodeID() || alive.Actor.ClassName == "" || alive.Actor.Namespace != "events" {
		t.Errorf("alive actor: %v", alive.Actor)
	}
	if err := Kill(ctx, a); err != nil {
		t.Fatal(err)
	}
	dead := waitRecord(t, c, rpc.MListActors, actorsOf, func(r *pb.ActorRecord) bool {
		return r.Actor.Name == "listed" && r.Actor.State == "DEAD"
	})
	if dead.Actor.DeathCause != "KILLED" || dead.Actor.DeathMessage != "actor was killed by rayo.Kill" {
		t.Errorf("dead actor without a cause: %v", dead.Actor)
	}
}
