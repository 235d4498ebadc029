package core

import (
	"os"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/state"
)

// Task and actor events: the owner records each change of its tasks' and
// actors' states, cheaply, under rt.mu; a flusher sends them in batches to
// the node's raylet, which keeps them for the state API (or passes them to
// the control store). A worker adds the events only it sees: when a task
// starts and ends running.

// eventFlushInterval is how often buffered events go to the raylet.
const eventFlushInterval = 200 * time.Millisecond

// maxBufferedEvents bounds the events waiting for the flusher; more are
// dropped and counted.
const maxBufferedEvents = 20000

// EventReporter is a raylet client that takes state events (MReportEvents).
type EventReporter interface {
	ReportEvents(*pb.StateEvents)
}

// taskEv is one recorded change of a task attempt's state.
type taskEv struct {
	t       *task
	attempt int32
	state   string
	at      int64
	first   bool // the attempt's first event: carries its name, type, resources
	err     *pb.TaskError
	ran     *pb.TaskReply // for an end: where and when it ran, from the worker's reply
}

// eventBuf is the runtime's buffer of events; guarded by rt.mu.
type eventBuf struct {
	on      bool
	tasks   []taskEv
	actors  []*pb.ActorEvent
	extra   []*pb.TaskEvent // complete events (from the worker's side)
	dropped int64
}

// eventsEnabled reports whether this process records events
// (RAYO_TASK_EVENTS=0 turns them off).
func eventsEnabled() bool { return os.Getenv(state.EnvTaskEventsEnable) != "0" }

// taskEventLocked records that t's current attempt entered st.
func (rt *Runtime) taskEventLocked(t *task, st string, e *pb.TaskError) {
	b := &rt.events
	if !b.on {
		return
	}
	if len(b.tasks)+len(b.extra) >= maxBufferedEvents {
		b.dropped++
		return
	}
	first := !t.evSeen || t.evAttempt != t.spec.Attempt
	t.evSeen, t.evAttempt = true, t.spec.Attempt
	ev := taskEv{t: t, attempt: t.spec.Attempt, state: st, at: time.Now().UnixNano(), first: first, err: e}
	if state.IsFinal(st) && t.ran != nil && t.ran.StartUnixNs != 0 {
		ev.ran, t.ran = t.ran, nil
	}
	b.tasks = append(b.tasks, ev)
}

// RecordTaskEvent adds an event made elsewhere (by the worker running the
// task) to the next batch.
func (rt *Runtime) RecordTaskEvent(e *pb.TaskEvent) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	b := &rt.events
	if !b.on {
		return
	}
	if len(b.tasks)+len(b.extra) >= maxBufferedEvents {
		b.dropped++
		return
	}
	if e.JobId == "" {
		e.JobId = rt.cfg.Job
	}
	b.extra = append(b.extra, e)
}

// RecordActorEvent adds an actor event to the next batch.
func (rt *Runtime) RecordActorEvent(e *pb.ActorEvent) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.actorEventLocked(e)
}

func (rt *Runtime) actorEventLocked(e *pb.ActorEvent) {
	b := &rt.events
	if !b.on || len(b.actors) >= maxBufferedEvents {
		return
	}
	if e.TimeUnixNs == 0 {
		e.TimeUnixNs = time.Now().UnixNano()
	}
	if e.JobId == "" {
		e.JobId = rt.cfg.Job
	}
	b.actors = append(b.actors, e)
}

// actorStateLocked records an owned actor's new state.
func (rt *Runtime) actorStateLocked(a *actorRec, st string, cause string) {
	if !a.owned {
		return
	}
	e := &pb.ActorEvent{ActorId: a.id[:], State: st, NumRestarts: int32(a.restarts), DeathCause: cause}
	if st == state.ActorPending && a.restarts == 0 {
		e.ClassName, e.Name, e.Namespace, e.Detached, e.Resources = a.class, a.regName, a.namespace, a.detached, a.resources
	}
	rt.actorEventLocked(e)
}

// takeEvents empties the buffer into a batch, or returns nil.
func (rt *Runtime) takeEvents() *pb.StateEvents {
	rt.mu.Lock()
	b := &rt.events
	if len(b.tasks) == 0 && len(b.actors) == 0 && len(b.extra) == 0 && b.dropped == 0 {
		rt.mu.Unlock()
		return nil
	}
	tasks, actors, extra, dropped := b.tasks, b.actors, b.extra, b.dropped
	b.tasks, b.actors, b.extra, b.dropped = nil, nil, nil, 0
	rt.mu.Unlock()
	out := &pb.StateEvents{Actors: actors, DroppedTasks: dropped, Tasks: make([]*pb.TaskEvent, 0, len(tasks)/2+len(extra))}
	// An attempt's changes within the batch go out as one event: the last
	// state, with the times of all (see TaskEvent.state_times).
	type key struct {
		t       *task
		attempt int32
	}
	byKey := make(map[key]*pb.TaskEvent, len(tasks)/2)
	for _, x := range tasks {
		spec := x.t.spec
		e := byKey[key{x.t, x.attempt}]
		if e == nil {
			e = &pb.TaskEvent{TaskId: spec.TaskId, Attempt: x.attempt, StateTimes: make([]int64, len(state.TaskStates))}
			byKey[key{x.t, x.attempt}] = e
			out.Tasks = append(out.Tasks, e)
		}
		i := state.StateIndex(x.state)
		if e.StateTimes[i] == 0 {
			e.StateTimes[i] = x.at
		}
		if e.State == "" || min(i, 4) >= min(state.StateIndex(e.State), 4) {
			e.State, e.TimeUnixNs = x.state, x.at
		}
		if x.first {
			e.Name, e.JobId, e.ActorId = spec.Name, rt.cfg.Job, spec.ActorId
			e.ParentTaskId = rt.parentTask(spec)
			switch {
			case x.t.create != nil:
				e.Type, e.Resources = state.TypeActorCreation, x.t.create.resources
			case x.t.actor != nil:
				e.Type = state.TypeActorTask
			default:
				e.Type = state.TypeNormal
				if x.t.q != nil {
					e.Resources = x.t.q.resources
				}
			}
		}
		if x.err != nil {
			e.ErrorType, e.Error = x.err.Kind, errorText(x.err)
		}
		if r := x.ran; r != nil {
			if run := state.StateIndex(state.TaskRunning); e.StateTimes[run] == 0 {
				e.StateTimes[run] = r.StartUnixNs
			}
			e.NodeId, e.WorkerId, e.WorkerPid = r.NodeId, r.WorkerId, r.Pid
		}
	}
	// The worker's events (RUNNING, then the end) coalesce the same way.
	type wkey struct {
		id      string
		attempt int32
	}
	ends := make(map[wkey]*pb.TaskEvent, len(extra)/2)
	for _, x := range extra {
		i := state.StateIndex(x.State)
		if i < 0 {
			continue
		}
		k := wkey{string(x.TaskId), x.Attempt}
		e := ends[k]
		if e == nil {
			x.StateTimes = make([]int64, len(state.TaskStates))
			x.StateTimes[i] = x.TimeUnixNs
			ends[k] = x
			out.Tasks = append(out.Tasks, x)
			continue
		}
		if e.StateTimes[i] == 0 {
			e.StateTimes[i] = x.TimeUnixNs
		}
		if min(i, 4) >= min(state.StateIndex(e.State), 4) {
			e.State, e.TimeUnixNs = x.State, x.TimeUnixNs
			if x.ErrorType != "" {
				e.ErrorType, e.Error = x.ErrorType, x.Error
			}
		}
	}
	return out
}

// parentTask is the task this process runs that submitted spec, if known:
// a worker running one task at a time names it.
func (rt *Runtime) parentTask(*pb.TaskSpec) []byte {
	if p := rt.running.Load(); p != nil {
		return p[:]
	}
	return nil
}

// SetRunning tells the runtime which task its process runs now (nil: none),
// so the tasks it submits name it as their parent.
func (rt *Runtime) SetRunning(id *ids.TaskID) { rt.running.Store(id) }

// errorText is a task error as the state API shows it: the message, then
// the remote stack.
func errorText(e *pb.TaskError) string {
	if e.Stack == "" {
		return e.Message
	}
	return e.Message + "\n" + e.Stack
}

// flushEvents sends buffered events to the raylet until stop is closed,
// and once more then.
func (rt *Runtime) flushEvents(to EventReporter, stop <-chan struct{}) {
	t := time.NewTicker(eventFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			if b := rt.takeEvents(); b != nil {
				to.ReportEvents(b)
			}
			return
		}
		if b := rt.takeEvents(); b != nil {
			to.ReportEvents(b)
		}
	}
}
