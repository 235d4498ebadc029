// Package tasktable keeps the tables behind the state API, the dashboard and
// `rayo list`: every task attempt and actor, as the events their owners and
// workers report make them. The tables live in memory and are bounded: past
// the limit, the oldest finished task attempts (and dead actors) go first,
// and the drops are counted so the API can say so.
package tasktable

import (
	"slices"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Task states, in the order an attempt goes through them (Ray's names).
const (
	TaskPendingArgs     = "PENDING_ARGS_AVAIL"
	TaskPendingNode     = "PENDING_NODE_ASSIGNMENT"
	TaskSubmitted       = "SUBMITTED_TO_WORKER"
	TaskRunning         = "RUNNING"
	TaskFinished        = "FINISHED"
	TaskFailed          = "FAILED"
	ActorUnready        = "DEPENDENCIES_UNREADY"
	ActorPending        = "PENDING_CREATION"
	ActorAlive          = "ALIVE"
	ActorRestarting     = "RESTARTING"
	ActorDead           = "DEAD"
	DefaultMaxTasks     = 10000
	DefaultMaxActors    = 10000
	TypeNormal          = "NORMAL_TASK"
	TypeActorCreation   = "ACTOR_CREATION_TASK"
	TypeActorTask       = "ACTOR_TASK"
	EnvMaxTaskRecords   = "RAYO_MAX_TASK_RECORDS"
	EnvTaskEventsEnable = "RAYO_TASK_EVENTS"
)

// TaskStates lists the task states in Ray's order: the index of a state
// is its position in TaskEvent.state_times.
var TaskStates = [...]string{TaskPendingArgs, TaskPendingNode, TaskSubmitted, TaskRunning, TaskFinished, TaskFailed}

// StateIndex is the position of a task state in TaskStates, or -1.
func StateIndex(st string) int {
	switch st {
	case TaskPendingArgs:
		return 0
	case TaskPendingNode:
		return 1
	case TaskSubmitted:
		return 2
	case TaskRunning:
		return 3
	case TaskFinished:
		return 4
	case TaskFailed:
		return 5
	}
	return -1
}

// rank orders states by index, FINISHED and FAILED alike (both final).
func rank(i int) int { return min(i, 4) }

// IsFinal reports whether a task state is FINISHED or FAILED.
func IsFinal(state string) bool { return state == TaskFinished || state == TaskFailed }

type taskKey struct {
	id      [16]byte // ids.TaskID
	attempt int32
}

type taskRec struct {
	ev    *pb.TaskEvent
	times [len(TaskStates)]int64
	cur   int    // index of ev.State, -1 before any
	seq   uint64 // insertion order: older first
	final bool   // queued in Table.finished
}

type actorRec struct {
	ev       *pb.ActorEvent
	times    map[string]int64
	lastTime int64 // the time of the event that set ev.State
	seq      uint64
}

// Table holds task attempts and actors. It is safe for concurrent use.
type Table struct {
	maxTasks, maxActors int

	mu       sync.Mutex
	tasks    map[taskKey]*taskRec
	finished []taskKey // attempts in the order they ended: the first to drop...
	head     int       // ...from finished[head]
	actors   map[string]*actorRec
	seq      uint64
	dropped  int64             // task attempts dropped here or by reporters
	ended    map[string]jobEnd // the jobs that ended lately (see JobEnded)...
	endOrder []string          // ...in the order they ended

	deadNodes map[string]jobEnd // the nodes that died lately (see NodeDied)...
	deadOrder []string          // ...in the order they died
}

// NewTable makes a table of at most maxTasks task attempts and maxActors
// actors (0: the defaults).
func NewTable(maxTasks, maxActors int) *Table {
	if maxTasks <= 0 {
		maxTasks = DefaultMaxTasks
	}
	if maxActors <= 0 {
		maxActors = DefaultMaxActors
	}
	return &Table{maxTasks: maxTasks, maxActors: maxActors, tasks: make(map[taskKey]*taskRec), actors: make(map[string]*actorRec),
		ended: make(map[string]jobEnd), deadNodes: make(map[string]jobEnd)}
}

// MaxReportCount bounds each count one report may add (tasks dropped, runs
// ended): more than any process can see between two reports (every 200
// ms). A report past it is a forgery or a bug, and its count is ignored,
// so that no reporter can push the cluster's totals to absurd values.
const MaxReportCount = 1 << 24

// Report merges a batch of events. The table keeps the events: the caller
// must not use them afterwards. It returns the records of the named and
// detached actors the batch changed (see Durable), for the control store
// to keep.
func (t *Table) Report(b *pb.StateEvents) []*pb.ActorRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := b.DroppedTasks; d > 0 && d <= MaxReportCount {
		t.dropped += d
	}
	for _, e := range b.Tasks {
		t.mergeTaskLocked(e)
	}
	var changed []*actorRec
	for _, e := range b.Actors {
		if r := t.mergeActorLocked(e); r != nil && durable(r.ev) && !slices.Contains(changed, r) {
			changed = append(changed, r)
		}
	}
	t.boundLocked()
	return durableRecords(changed)
}

func (t *Table) mergeTaskLocked(e *pb.TaskEvent) {
	idx := StateIndex(e.State)
	if len(e.TaskId) != 16 || idx < 0 {
		return
	}
	k := taskKey{[16]byte(e.TaskId), e.Attempt}
	r := t.tasks[k]
	at, times := e.TimeUnixNs, e.StateTimes
	fresh := r == nil
	if fresh {
		// The first event of an attempt becomes its record (most attempts
		// have one): its state and times are set again below.
		t.seq++
		e.State, e.TimeUnixNs, e.StateTimes = "", 0, nil
		r = &taskRec{ev: e, cur: -1, seq: t.seq}
		t.tasks[k] = r
	}
	r.enter(idx, at)
	for i, at := range times {
		if i < len(TaskStates) && at != 0 {
			r.enter(i, at)
		}
	}
	if IsFinal(r.ev.State) && !r.final {
		r.final = true
		t.finished = append(t.finished, k)
	}
	if !fresh {
		mergeTaskFields(r.ev, e)
	}
}

// enter records that the attempt entered state i at (the first time wins)
// and moves it on if i is further along; a final state stays.
func (r *taskRec) enter(i int, at int64) {
	if old := r.times[i]; old == 0 || (at != 0 && at < old) {
		r.times[i] = at
	}
	if r.cur < 0 || rank(i) > rank(r.cur) {
		r.cur = i
		r.ev.State, r.ev.TimeUnixNs = TaskStates[i], r.times[i]
	}
}

// mergeTaskFields copies the fields e carries into into.
func mergeTaskFields(into, e *pb.TaskEvent) {
	if e.Name != "" {
		into.Name = e.Name
	}
	if e.Type != "" {
		into.Type = e.Type
	}
	if e.JobId != "" {
		into.JobId = e.JobId
	}
	if len(e.ActorId) > 0 {
		into.ActorId = e.ActorId
	}
	if len(e.ParentTaskId) > 0 {
		into.ParentTaskId = e.ParentTaskId
	}
	if e.NodeId != "" {
		into.NodeId = e.NodeId
	}
	if len(e.WorkerId) > 0 {
		into.WorkerId = e.WorkerId
	}
	if e.WorkerPid != 0 {
		into.WorkerPid = e.WorkerPid
	}
	if len(e.Resources) > 0 {
		into.Resources = e.Resources
	}
	if e.ErrorType != "" && (into.ErrorType == "" || e.State == TaskFailed) {
		into.ErrorType = e.ErrorType
	}
	if e.Error != "" && (into.Error == "" || len(e.Error) > len(into.Error)) {
		into.Error = e.Error // the worker's, with the stack, over the owner's summary
	}
}

// mergeActorLocked merges an actor's event into its record, which it
// returns (nil for an event it ignores).
func (t *Table) mergeActorLocked(e *pb.ActorEvent) *actorRec {
	if len(e.ActorId) == 0 || e.State == "" {
		return nil
	}
	k := string(e.ActorId)
	r := t.actors[k]
	if r == nil {
		t.seq++
		r = &actorRec{ev: &pb.ActorEvent{ActorId: e.ActorId}, times: make(map[string]int64, 4), seq: t.seq}
		t.actors[k] = r
	}
	if _, ok := r.times[e.State]; !ok {
		r.times[e.State] = e.TimeUnixNs
	}
	// Actor states can go back and forth (ALIVE, RESTARTING, ALIVE): the
	// latest event wins, except that DEAD is final, with its first cause,
	// and PENDING_CREATION comes first, whatever the clocks say (the
	// control store's, at the name's registration, may be ahead of the
	// worker's that says ALIVE).
	later := e.TimeUnixNs >= r.lastTime
	if e.State == ActorPending {
		later = later && r.ev.State == ActorPending
	} else if r.ev.State == ActorPending {
		later = true
	}
	if e.State == ActorDead {
		r.kill(e.DeathCause, e.DeathMessage, e.TimeUnixNs)
	} else if r.ev.State != ActorDead && (r.ev.State == "" || later) {
		r.ev.State, r.ev.TimeUnixNs, r.lastTime = e.State, e.TimeUnixNs, e.TimeUnixNs
	}
	into := r.ev
	if e.ClassName != "" {
		into.ClassName = e.ClassName
	}
	if e.Name != "" {
		into.Name = e.Name
	}
	if e.Namespace != "" {
		into.Namespace = e.Namespace
	}
	if e.JobId != "" {
		into.JobId = e.JobId
	}
	if e.NodeId != "" {
		into.NodeId = e.NodeId
	}
	if len(e.WorkerId) > 0 {
		into.WorkerId = e.WorkerId
	}
	if e.Pid != 0 {
		into.Pid = e.Pid
	}
	if e.NumRestarts > into.NumRestarts {
		into.NumRestarts = e.NumRestarts
	}
	if e.State == ActorPending && e.NumRestarts == 0 {
		into.MaxRestarts = e.MaxRestarts // the first event carries the actor's options
	}
	if e.Detached {
		into.Detached = true
	}
	if len(e.Resources) > 0 {
		into.Resources = e.Resources
	}
	if end, ok := t.ended[into.JobId]; ok && !into.Detached {
		// Its job ended before this event came: it died with it.
		r.kill(end.cause, end.message, max(end.at, r.lastTime))
	}
	if dn, ok := t.deadNodes[into.NodeId]; ok {
		r.diedWithNode(dn.message, dn.at)
	}
	return r
}

// boundLocked drops the oldest finished attempts (then the oldest of any)
// past maxTasks, and the oldest dead actors past maxActors.
func (t *Table) boundLocked() {
	for len(t.tasks) > t.maxTasks && t.head < len(t.finished) {
		k := t.finished[t.head]
		t.head++
		if _, ok := t.tasks[k]; ok {
			delete(t.tasks, k)
			t.dropped++
		}
	}
	if t.head > 1024 && t.head > len(t.finished)/2 {
		// Move what is left to the front, rather than grow the array.
		n := copy(t.finished, t.finished[t.head:])
		t.finished, t.head = t.finished[:n], 0
	}
	if over := len(t.tasks) - t.maxTasks; over > 0 {
		// Every attempt still runs: the oldest go.
		type kv struct {
			k taskKey
			r *taskRec
		}
		all := make([]kv, 0, len(t.tasks))
		for k, r := range t.tasks {
			all = append(all, kv{k, r})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].r.seq < all[j].r.seq })
		for _, x := range all[:over] {
			delete(t.tasks, x.k)
		}
		t.dropped += int64(over)
	}
	if over := len(t.actors) - t.maxActors; over > 0 {
		type kv struct {
			k string
			r *actorRec
		}
		all := make([]kv, 0, len(t.actors))
		for k, r := range t.actors {
			all = append(all, kv{k, r})
		}
		sort.Slice(all, func(i, j int) bool {
			di, dj := all[i].r.ev.State == ActorDead, all[j].r.ev.State == ActorDead
			if di != dj {
				return di
			}
			return all[i].r.seq < all[j].r.seq
		})
		for _, x := range all[:over] {
			delete(t.actors, x.k)
		}
	}
}

// Tasks lists task attempts, newest first: at most q.Limit (0: all), or
// every attempt of task q.Id.
func (t *Table) Tasks(q *pb.StateQuery) *pb.StateList {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := &pb.StateList{Total: int64(len(t.tasks)), DroppedTasks: t.dropped}
	recs := make([]*taskRec, 0, len(t.tasks))
	for k, r := range t.tasks {
		if len(q.GetId()) > 0 && string(k.id[:]) != string(q.GetId()) {
			continue
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq > recs[j].seq })
	if q.GetLimit() > 0 && int64(len(recs)) > q.GetLimit() {
		recs = recs[:q.GetLimit()]
	}
	out.Tasks = make([]*pb.TaskRecord, len(recs))
	for i, r := range recs {
		times := make(map[string]int64, len(r.times))
		for j, v := range r.times {
			if v != 0 {
				times[TaskStates[j]] = v
			}
		}
		ev := proto.Clone(r.ev).(*pb.TaskEvent)
		ev.StateTimes = nil
		out.Tasks[i] = &pb.TaskRecord{Task: ev, StateTimesUnixNs: times}
	}
	return out
}

// Actors lists actors, newest first: at most q.Limit (0: all), or actor
// q.Id alone.
func (t *Table) Actors(q *pb.StateQuery) *pb.StateList {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := &pb.StateList{Total: int64(len(t.actors))}
	recs := make([]*actorRec, 0, len(t.actors))
	for k, r := range t.actors {
		if len(q.GetId()) > 0 && k != string(q.GetId()) {
			continue
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq > recs[j].seq })
	if q.GetLimit() > 0 && int64(len(recs)) > q.GetLimit() {
		recs = recs[:q.GetLimit()]
	}
	out.Actors = make([]*pb.ActorRecord, len(recs))
	for i, r := range recs {
		out.Actors[i] = r.record()
	}
	return out
}

// TaskCounts counts task attempts by state.
func (t *Table) TaskCounts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int)
	for _, r := range t.tasks {
		out[r.ev.State]++
	}
	return out
}

// ActorCounts counts actors by state.
func (t *Table) ActorCounts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int)
	for _, r := range t.actors {
		out[r.ev.State]++
	}
	return out
}
