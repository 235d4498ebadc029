// Package state keeps the tables behind the state API, the dashboard and
// `rayo list`: every task attempt and actor, as the events their owners and
// workers report make them. The tables live in memory and are bounded: past
// the limit, the oldest finished task attempts (and dead actors) go first,
// and the drops are counted so the API can say so.
package state

import (
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

// taskRank orders task states; final states rank highest.
var taskRank = map[string]int{
	TaskPendingArgs: 1, TaskPendingNode: 2, TaskSubmitted: 3, TaskRunning: 4, TaskFinished: 5, TaskFailed: 5,
}

// IsFinal reports whether a task state is FINISHED or FAILED.
func IsFinal(state string) bool { return state == TaskFinished || state == TaskFailed }

type taskKey struct {
	id      string
	attempt int32
}

type taskRec struct {
	ev    *pb.TaskEvent
	times map[string]int64
	seq   uint64 // insertion order: older first
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

	mu      sync.Mutex
	tasks   map[taskKey]*taskRec
	actors  map[string]*actorRec
	seq     uint64
	dropped int64 // task attempts dropped here or by reporters
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
	return &Table{maxTasks: maxTasks, maxActors: maxActors, tasks: make(map[taskKey]*taskRec), actors: make(map[string]*actorRec)}
}

// Report merges a batch of events.
func (t *Table) Report(b *pb.StateEvents) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped += b.DroppedTasks
	for _, e := range b.Tasks {
		t.mergeTaskLocked(e)
	}
	for _, e := range b.Actors {
		t.mergeActorLocked(e)
	}
	t.boundLocked()
}

func (t *Table) mergeTaskLocked(e *pb.TaskEvent) {
	if len(e.TaskId) == 0 || e.State == "" {
		return
	}
	k := taskKey{string(e.TaskId), e.Attempt}
	r := t.tasks[k]
	if r == nil {
		t.seq++
		r = &taskRec{ev: &pb.TaskEvent{TaskId: e.TaskId, Attempt: e.Attempt}, times: make(map[string]int64, 4), seq: t.seq}
		t.tasks[k] = r
	}
	if old, ok := r.times[e.State]; !ok || (e.TimeUnixNs != 0 && e.TimeUnixNs < old) {
		r.times[e.State] = e.TimeUnixNs // the first time it entered the state
	}
	cur := r.ev.State
	if taskRank[e.State] > taskRank[cur] || cur == "" {
		r.ev.State, r.ev.TimeUnixNs = e.State, r.times[e.State]
	}
	mergeTaskFields(r.ev, e)
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

func (t *Table) mergeActorLocked(e *pb.ActorEvent) {
	if len(e.ActorId) == 0 || e.State == "" {
		return
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
	// latest event wins, except that DEAD is final.
	if r.ev.State != ActorDead && (r.ev.State == "" || e.TimeUnixNs >= r.lastTime || e.State == ActorDead) {
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
	if e.DeathCause != "" {
		into.DeathCause = e.DeathCause
	}
	if e.Detached {
		into.Detached = true
	}
	if len(e.Resources) > 0 {
		into.Resources = e.Resources
	}
}

// boundLocked drops the oldest finished attempts (then the oldest of any)
// past maxTasks, and the oldest dead actors past maxActors.
func (t *Table) boundLocked() {
	if over := len(t.tasks) - t.maxTasks; over > 0 {
		type kv struct {
			k taskKey
			r *taskRec
		}
		all := make([]kv, 0, len(t.tasks))
		for k, r := range t.tasks {
			all = append(all, kv{k, r})
		}
		sort.Slice(all, func(i, j int) bool {
			fi, fj := IsFinal(all[i].r.ev.State), IsFinal(all[j].r.ev.State)
			if fi != fj {
				return fi
			}
			return all[i].r.seq < all[j].r.seq
		})
		// Drop a tenth more than needed, so a full table does not sort on
		// every batch.
		n := min(len(all), over+t.maxTasks/10)
		for _, x := range all[:n] {
			delete(t.tasks, x.k)
		}
		t.dropped += int64(n)
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
		if len(q.GetId()) > 0 && k.id != string(q.GetId()) {
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
		for s, v := range r.times {
			times[s] = v
		}
		out.Tasks[i] = &pb.TaskRecord{Task: proto.Clone(r.ev).(*pb.TaskEvent), StateTimesUnixNs: times}
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
		times := make(map[string]int64, len(r.times))
		for s, v := range r.times {
			times[s] = v
		}
		out.Actors[i] = &pb.ActorRecord{Actor: proto.Clone(r.ev).(*pb.ActorEvent), StateTimesUnixNs: times}
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
