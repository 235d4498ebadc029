package worker

import (
	"os"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/state"
)

// execute runs one task, reporting when it starts and ends running: the
// part of a task's life only its worker sees.
func (w *Worker) execute(spec *pb.TaskSpec) *pb.TaskReply {
	node := os.Getenv(raylet.EnvNode)
	w.rt.RecordTaskEvent(&pb.TaskEvent{
		TaskId: spec.TaskId, Attempt: spec.Attempt, State: state.TaskRunning, TimeUnixNs: time.Now().UnixNano(),
		NodeId: node, WorkerId: w.id[:], WorkerPid: int32(w.pid),
	})
	tid, err := ids.TaskIDFrom(spec.TaskId)
	if err == nil && spec.MaxConcurrency <= 1 {
		w.rt.SetRunning(&tid) // what it submits names it as the parent
	}
	reply := w.run(spec)
	w.rt.SetRunning(nil)
	end := &pb.TaskEvent{
		TaskId: spec.TaskId, Attempt: spec.Attempt, State: state.TaskFinished, TimeUnixNs: time.Now().UnixNano(),
		NodeId: node, WorkerId: w.id[:], WorkerPid: int32(w.pid),
	}
	if e := reply.Error; e != nil {
		end.State, end.ErrorType, end.Error = state.TaskFailed, e.Kind, e.Message
		if e.Stack != "" {
			end.Error += "\n" + e.Stack
		}
	}
	w.rt.RecordTaskEvent(end)
	if spec.ActorCreate && reply.Error == nil {
		w.rt.RecordActorEvent(&pb.ActorEvent{
			ActorId: spec.ActorId, State: state.ActorAlive, TimeUnixNs: end.TimeUnixNs,
			NodeId: node, WorkerId: w.id[:], Pid: int32(w.pid),
		})
	}
	return reply
}
