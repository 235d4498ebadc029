package worker

import (
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// runningAfter is how long a task runs before its worker reports it
// RUNNING itself. A shorter task's reply carries where and when it ran, and
// its owner reports it: one event per task instead of three, on the path
// of every task.
const runningAfter = 100 * time.Millisecond

// execute runs one task. The reply says where and when it ran; a task that
// runs long is also reported RUNNING (and then ended) by the worker, so the
// state API shows it while it runs.
func (w *Worker) execute(spec *pb.TaskSpec) *pb.TaskReply {
	node := w.node
	start := time.Now()
	call := w.beginRun(spec, start)
	if len(spec.ActorId) == 0 || spec.ActorCreate {
		setGPUs(spec.GpuIds) // an actor's calls keep its creation's
	}
	tid, err := ids.TaskIDFrom(spec.TaskId)
	if err == nil && spec.MaxConcurrency <= 1 {
		w.rt.SetRunning(&tid) // what it submits names it as the parent
	}
	group := spec.CaptureGroup // what it submits goes to this placement group
	if len(spec.ActorId) > 0 {
		w.mu.Lock()
		if spec.ActorCreate {
			w.actorGroup = spec.CaptureGroup
		}
		group = w.actorGroup
		w.mu.Unlock()
	}
	w.rt.SetCaptureGroup(group)
	reply := w.run(spec)
	w.rt.SetRunning(nil)
	if len(spec.ActorId) == 0 {
		w.rt.SetCaptureGroup(nil) // an actor's calls at once keep theirs
	}
	reported := w.endRun(call)
	reply.StartUnixNs, reply.Pid, reply.NodeId, reply.WorkerId = start.UnixNano(), int32(w.pid), node, w.id[:]
	end := time.Now().UnixNano()
	w.rt.RecordRun(reply.Error != nil, time.Duration(end-start.UnixNano()))
	if reported {
		e := &pb.TaskEvent{
			TaskId: spec.TaskId, Attempt: spec.Attempt, State: tasktable.TaskFinished, TimeUnixNs: end,
			NodeId: node, WorkerId: w.id[:], WorkerPid: int32(w.pid),
		}
		if x := reply.Error; x != nil {
			e.State, e.ErrorType, e.Error = tasktable.TaskFailed, core.ErrorType(x.Kind), x.Message
			if x.Stack != "" {
				e.Error += "\n" + x.Stack
			}
		}
		w.rt.RecordTaskEvent(e)
	}
	if spec.ActorCreate && reply.Error == nil {
		w.rt.RecordActorEvent(&pb.ActorEvent{
			ActorId: spec.ActorId, State: tasktable.ActorAlive, TimeUnixNs: end,
			NodeId: node, WorkerId: w.id[:], Pid: int32(w.pid),
		})
	}
	return reply
}

// runWatch finds the tasks that run long: one timer for the worker, armed
// while a task it has not reported yet runs, rather than one per task. A
// stream of short tasks arms it once, not once each.
type runWatch struct {
	mu    sync.Mutex // protects what follows
	calls []*runningCall
	timer *time.Timer // made at the first task
	armed bool
}

// runningCall is a task that runs.
type runningCall struct {
	spec     *pb.TaskSpec
	start    time.Time
	reported bool
}

// beginRun notes that spec started running at start.
func (w *Worker) beginRun(spec *pb.TaskSpec, start time.Time) *runningCall {
	c := &runningCall{spec: spec, start: start}
	r := &w.watch
	r.mu.Lock()
	r.calls = append(r.calls, c)
	if !r.armed {
		// No task that runs is still to be reported: this one is next.
		r.armed = true
		if r.timer == nil {
			r.timer = time.AfterFunc(runningAfter, w.reportLongRuns)
		} else {
			r.timer.Reset(runningAfter)
		}
	}
	r.mu.Unlock()
	return c
}

// endRun notes that c ended, and reports whether it was reported RUNNING
// (so that its end must be reported too).
func (w *Worker) endRun(c *runningCall) bool {
	r := &w.watch
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.calls {
		if x == c {
			last := len(r.calls) - 1
			r.calls[i], r.calls[last] = r.calls[last], nil
			r.calls = r.calls[:last]
			break
		}
	}
	return c.reported
}

// reportLongRuns reports RUNNING the tasks that have run for runningAfter,
// and arms the timer for the next one due, if any.
func (w *Worker) reportLongRuns() {
	r := &w.watch
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	next := time.Duration(-1)
	for _, c := range r.calls {
		if c.reported {
			continue
		}
		if left := runningAfter - now.Sub(c.start); left > 0 {
			if next < 0 || left < next {
				next = left
			}
			continue
		}
		// Under the lock, so that its end, reported after endRun, comes
		// after it.
		c.reported = true
		w.rt.RecordTaskEvent(&pb.TaskEvent{
			TaskId: c.spec.TaskId, Attempt: c.spec.Attempt, State: tasktable.TaskRunning, TimeUnixNs: c.start.UnixNano(),
			NodeId: w.node, WorkerId: w.id[:], WorkerPid: int32(w.pid),
		})
	}
	r.armed = next >= 0
	if r.armed {
		r.timer.Reset(next)
	}
}
