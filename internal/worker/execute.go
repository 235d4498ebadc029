package worker

import (
	"os"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rayletclient"
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
	node := os.Getenv(rayletclient.EnvNode)
	start := time.Now()
	running := &pb.TaskEvent{
		TaskId: spec.TaskId, Attempt: spec.Attempt, State: tasktable.TaskRunning, TimeUnixNs: start.UnixNano(),
		NodeId: node, WorkerId: w.id[:], WorkerPid: int32(w.pid),
	}
	var mu sync.Mutex
	reported, done := false, false
	timer := time.AfterFunc(runningAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			reported = true
			w.rt.RecordTaskEvent(running)
		}
	})
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
	timer.Stop()
	mu.Lock()
	done = true
	mu.Unlock()
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
