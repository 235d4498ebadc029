package core

import (
	"os"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/metrics"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Task and actor events: the owner records each change of its tasks' and
// actors' states, cheaply, under rt.mu; a flusher sends them in batches to
// the node's raylet, which keeps them for the state API (or passes them to
// the control store). A worker adds the events only it sees: when a task
// starts and ends running.

// eventFlushInterval is how often buffered events go to the raylet.
const eventFlushInterval = 200 * time.Millisecond

// maxBufferedEvents bounds the task attempts recorded per flush (and so
// to 50,000 a second, as many as the default table keeps at once): past
// it, new attempts are left out and counted as dropped. Besides bounding
// memory, this keeps the cost of observing a flood of tiny tasks, most of
// which the bounded table would drop at once, off the tasks themselves.
const maxBufferedEvents = tasktable.DefaultMaxTasks

// EventReporter is a raylet client that takes state events (MReportEvents).
type EventReporter interface {
	ReportEvents(*pb.StateEvents)
}

// eventBuf is the runtime's buffer of events, with a lock of its own: a
// leaf, taken under the runtime's others (see the lock order in
// runtime.go). A task
// attempt's changes between two flushes go out as one event, built in
// place as they happen (the last state, with the times of all: see
// TaskEvent.state_times).
type eventBuf struct {
	on bool       // set by New, then only read
	mu sync.Mutex // protects what follows

	tasks   []*pb.TaskEvent // one per attempt that changed since the last flush
	owners  []*task         // the task of each, whose ev is cleared at the flush
	actors  []*pb.ActorEvent
	extra   []*pb.TaskEvent // complete events (from the worker's side)
	dropped int64
	runs    *pb.RunTally // the attempts this worker ran, for its node's metrics
}

// eventsEnabled reports whether this process records events
// (RAYO_TASK_EVENTS=0 turns them off).
func eventsEnabled() bool { return os.Getenv(tasktable.EnvTaskEventsEnable) != "0" }

// eventBox holds an event and its state times in one allocation.
type eventBox struct {
	ev    pb.TaskEvent
	times [len(tasktable.TaskStates)]int64
}

// taskEventLocked records that t's current attempt entered st. The
// caller holds the lock of t (see task).
func (rt *Runtime) taskEventLocked(t *task, st string, e *pb.TaskError) {
	b := &rt.events
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	spec := t.spec
	ev := t.ev
	if ev == nil || ev.Attempt != spec.Attempt {
		known := t.evSeen && t.evAttempt == spec.Attempt
		if known && t.evDropped {
			return // the attempt was left out: all of it, not its end alone
		}
		if !known && len(b.tasks) >= maxBufferedEvents {
			// Over the budget, new attempts are left out (and counted);
			// those already recorded go on being.
			t.evSeen, t.evAttempt, t.evDropped = true, spec.Attempt, true
			b.dropped++
			return
		}
		box := &eventBox{}
		ev = &box.ev
		ev.TaskId, ev.Attempt, ev.StateTimes = spec.TaskId, spec.Attempt, box.times[:]
		if !known {
			// The attempt's first event carries its name, type, resources.
			t.evSeen, t.evAttempt, t.evDropped = true, spec.Attempt, false
			ev.Name, ev.JobId, ev.ActorId = spec.Name, rt.cfg.Job, spec.ActorId
			ev.ParentTaskId = rt.parentTask(spec)
			switch {
			case t.create != nil:
				ev.Type, ev.Resources = tasktable.TypeActorCreation, t.create.resources
			case t.actor != nil:
				ev.Type = tasktable.TypeActorTask
			default:
				ev.Type = tasktable.TypeNormal
				if t.q != nil {
					ev.Resources = t.q.resources
				}
			}
		}
		t.ev = ev
		b.tasks = append(b.tasks, ev)
		b.owners = append(b.owners, t)
	}
	now := time.Now().UnixNano()
	i := tasktable.StateIndex(st)
	if ev.StateTimes[i] == 0 {
		ev.StateTimes[i] = now
	}
	if ev.State == "" || min(i, 4) >= min(tasktable.StateIndex(ev.State), 4) {
		ev.State, ev.TimeUnixNs = st, now
	}
	if e != nil {
		ev.ErrorType, ev.Error = ErrorType(e.Kind), errorText(e)
	}
	if r := t.ran; tasktable.IsFinal(st) && r != nil {
		// Where and when it ran, from the worker's reply; or where, from
		// the lease of a worker that died before it replied.
		if run := tasktable.StateIndex(tasktable.TaskRunning); r.StartUnixNs != 0 && ev.StateTimes[run] == 0 {
			ev.StateTimes[run] = r.StartUnixNs
		}
		if len(r.WorkerId) > 0 {
			ev.NodeId, ev.WorkerId, ev.WorkerPid = r.NodeId, r.WorkerId, r.Pid
		}
		t.ran = nil
	}
}

// RecordRun tallies a task attempt this worker ran for d, for its node's
// metrics: every attempt is counted once, by the worker that ran it, in
// the next batch of events.
func (rt *Runtime) RecordRun(failed bool, d time.Duration) {
	b := &rt.events
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.runs
	if r == nil {
		r = &pb.RunTally{ExecBuckets: make([]int64, len(metrics.ExecBuckets)+1)}
		b.runs = r
	}
	if failed {
		r.Failed++
	} else {
		r.Finished++
	}
	r.ExecBuckets[metrics.BucketOf(d.Seconds())]++
	r.ExecSeconds += d.Seconds()
}

// RecordTaskEvent adds an event made elsewhere (by the worker running the
// task) to the next batch.
func (rt *Runtime) RecordTaskEvent(e *pb.TaskEvent) {
	b := &rt.events
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
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
	b := &rt.events
	if !b.on {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.actors) >= maxBufferedEvents {
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

// actorStateLocked records an owned actor's new state. The caller holds
// the actors' lock.
func (rt *Runtime) actorStateLocked(a *actorRec, st, cause, message string) {
	if !a.owned || !rt.events.on {
		return
	}
	e := &pb.ActorEvent{ActorId: a.id[:], State: st, NumRestarts: int32(a.restarts), DeathCause: cause, DeathMessage: message}
	if st == tasktable.ActorAlive && a.ranOn != nil {
		// The worker says so too, but its word may not come out before
		// its node dies: the control store needs the node of an actor.
		e.NodeId, e.Pid, e.WorkerId = a.ranOn.NodeId, a.ranOn.Pid, a.ranOn.WorkerId
	}
	if st == tasktable.ActorPending && a.restarts == 0 {
		e.ClassName, e.Name, e.Namespace, e.Detached, e.Resources = a.class, a.regName, a.namespace, a.detached, a.resources
		e.MaxRestarts = int32(a.restartsLeft)
	}
	rt.RecordActorEvent(e)
}

// TakeEvents empties the buffer into a batch, or returns nil. The
// flusher sends such batches; a worker stopped at the end of its job hands
// over the last one in its reply to the raylet (MDrainWorker).
func (rt *Runtime) TakeEvents() *pb.StateEvents {
	rt.tasks.mu.Lock() // the tasks' ev are cleared
	b := &rt.events
	b.mu.Lock()
	if len(b.tasks) == 0 && len(b.actors) == 0 && len(b.extra) == 0 && b.dropped == 0 && b.runs == nil {
		b.mu.Unlock()
		rt.tasks.mu.Unlock()
		return nil
	}
	tasks, actors, extra, dropped, runs := b.tasks, b.actors, b.extra, b.dropped, b.runs
	b.runs = nil
	for i, t := range b.owners {
		t.ev = nil // its next change starts a new event
		b.owners[i] = nil
	}
	b.owners = b.owners[:0]
	b.tasks, b.actors, b.extra, b.dropped = make([]*pb.TaskEvent, 0, len(tasks)), nil, nil, 0
	b.mu.Unlock()
	rt.tasks.mu.Unlock()
	return coalesce(&pb.StateEvents{Actors: actors, DroppedTasks: dropped, Tasks: tasks, Runs: runs}, extra)
}

// coalesce adds to out the worker's events, one per task attempt: its
// last state, with the times of all.
func coalesce(out *pb.StateEvents, extra []*pb.TaskEvent) *pb.StateEvents {
	// The worker's events (RUNNING, then the end) coalesce the same way.
	type wkey struct {
		id      string
		attempt int32
	}
	ends := make(map[wkey]*pb.TaskEvent, len(extra)/2)
	for _, x := range extra {
		i := tasktable.StateIndex(x.State)
		if i < 0 {
			continue
		}
		k := wkey{string(x.TaskId), x.Attempt}
		e := ends[k]
		if e == nil {
			x.StateTimes = make([]int64, len(tasktable.TaskStates))
			x.StateTimes[i] = x.TimeUnixNs
			ends[k] = x
			out.Tasks = append(out.Tasks, x)
			continue
		}
		if e.StateTimes[i] == 0 {
			e.StateTimes[i] = x.TimeUnixNs
		}
		if min(i, 4) >= min(tasktable.StateIndex(e.State), 4) {
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
			if b := rt.TakeEvents(); b != nil {
				to.ReportEvents(b)
			}
			return
		}
		if b := rt.TakeEvents(); b != nil {
			to.ReportEvents(b)
		}
	}
}
