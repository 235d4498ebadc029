package tasktable

import (
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Why an actor is DEAD: its ActorEvent.death_cause, as Ray's
// ActorDeathCause names it. ActorEvent.death_message says it for people.
const (
	// CauseOwnerDied: the process that owned the actor died (a driver
	// killed or crashed), and the actor with it.
	CauseOwnerDied = "OWNER_DIED"
	// CauseJobFinished: the job that made the actor ended (its driver
	// called Shutdown). Detached actors do not die of it.
	CauseJobFinished = "JOB_FINISHED"
	// CauseNodeDied: the actor's node died, and it may not restart.
	CauseNodeDied = "NODE_DIED"
	// CauseKilled: rayo.Kill stopped it.
	CauseKilled = "KILLED"
	// CauseOutOfRestarts: its process died, and its MaxRestarts were spent.
	CauseOutOfRestarts = "OUT_OF_RESTARTS"
	// CauseCreationFailed: its constructor failed (or its worker died
	// while running it).
	CauseCreationFailed = "CREATION_FAILED"
	// CauseOutOfScope: no handle to it remained, so its owner stopped it.
	CauseOutOfScope = "OUT_OF_SCOPE"
)

// maxEndedJobs is how many ended jobs the table remembers, so that the
// late events of their actors do not bring them back to life.
const maxEndedJobs = 1000

// jobEnd is how a job ended (or a node died), for the actors it leaves
// behind.
type jobEnd struct {
	cause, message string
	at             int64
}

// durable reports whether an actor's record outlives a restart of the
// control store: it is detached or named.
func durable(e *pb.ActorEvent) bool { return e.Detached || e.Name != "" }

// Durable reports whether the control store keeps an actor's record in
// its store, so that the actor is listed after a restart: detached and
// named actors.
func Durable(a *pb.ActorRecord) bool { return a.GetActor() != nil && durable(a.Actor) }

// kill makes an actor DEAD at time at, for cause. A dead actor stays
// dead with its first cause, but that the owner's generic "its process
// died" (OUT_OF_RESTARTS) gives way to the control store's NODE_DIED,
// which says why the process died. It reports whether the record changed.
func (r *actorRec) kill(cause, message string, at int64) bool {
	ev := r.ev
	if ev.State == ActorDead {
		if ev.DeathCause == "" || (ev.DeathCause == CauseOutOfRestarts && cause == CauseNodeDied) {
			ev.DeathCause, ev.DeathMessage = cause, message
			return true
		}
		return false
	}
	ev.State, ev.TimeUnixNs, r.lastTime = ActorDead, at, at
	ev.DeathCause, ev.DeathMessage = cause, message
	if _, ok := r.times[ActorDead]; !ok {
		r.times[ActorDead] = at
	}
	return true
}

// JobEnded makes DEAD, with cause (JOB_FINISHED or OWNER_DIED) and
// message, every actor of job that is not detached, now and when its
// events come later. It returns the records of the named actors it
// changed (see Durable).
func (t *Table) JobEnded(job, cause, message string, at int64) []*pb.ActorRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	remember(t.ended, &t.endOrder, maxEndedJobs, job, jobEnd{cause, message, at})
	var changed []*actorRec
	for _, r := range t.actors {
		if r.ev.JobId == job && !r.ev.Detached && r.kill(cause, message, at) {
			changed = append(changed, r)
		}
	}
	return durableRecords(changed)
}

// NodeDied makes DEAD (NODE_DIED, with message) the actors on the node
// named node (ids.NodeID.Name) that may not restart: their MaxRestarts
// are spent. The owners of the others restart them elsewhere and say so.
// It returns the records of the named or detached actors it changed.
//
// Events that come later, naming the dead node, are judged the same way:
// the owner's and the worker's batches may not have come out before the
// node died.
func (t *Table) NodeDied(node, message string, at int64) []*pb.ActorRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	remember(t.deadNodes, &t.deadOrder, maxDeadNodes, node, jobEnd{CauseNodeDied, message, at})
	var changed []*actorRec
	for _, r := range t.actors {
		if r.ev.NodeId == node && r.diedWithNode(message, at) {
			changed = append(changed, r)
		}
	}
	return durableRecords(changed)
}

// maxDeadNodes is how many dead nodes the table remembers, for the late
// events of their actors.
const maxDeadNodes = 1000

// diedWithNode makes DEAD (NODE_DIED) an actor on a dead node that may
// not restart, or one its owner declared OUT_OF_RESTARTS. It reports
// whether the record changed.
func (r *actorRec) diedWithNode(message string, at int64) bool {
	ev := r.ev
	if ev.State == ActorDead && ev.DeathCause != CauseOutOfRestarts {
		return false
	}
	if ev.State != ActorDead && (ev.MaxRestarts < 0 || ev.NumRestarts < ev.MaxRestarts) {
		return false // its owner restarts it elsewhere
	}
	return r.kill(CauseNodeDied, message, max(at, r.lastTime))
}

// record copies an actor's record for the state API.
func (r *actorRec) record() *pb.ActorRecord {
	times := make(map[string]int64, len(r.times))
	for s, v := range r.times {
		times[s] = v
	}
	return &pb.ActorRecord{Actor: proto.Clone(r.ev).(*pb.ActorEvent), StateTimesUnixNs: times}
}

func durableRecords(recs []*actorRec) []*pb.ActorRecord {
	var out []*pb.ActorRecord
	for _, r := range recs {
		if durable(r.ev) {
			out = append(out, r.record())
		}
	}
	return out
}

// Restore puts back the records a control store kept of its named and
// detached actors (see Durable), older first, unless the table knows them
// already. The table keeps them: the caller must not use them afterwards.
func (t *Table) Restore(recs []*pb.ActorRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := func(a *pb.ActorRecord) int64 {
		var m int64
		for _, v := range a.StateTimesUnixNs {
			if m == 0 || v < m {
				m = v
			}
		}
		return m
	}
	sort.SliceStable(recs, func(i, j int) bool { return first(recs[i]) < first(recs[j]) })
	for _, a := range recs {
		if a.GetActor() == nil || len(a.Actor.ActorId) == 0 || a.Actor.State == "" {
			continue
		}
		k := string(a.Actor.ActorId)
		if t.actors[k] != nil {
			continue
		}
		t.seq++
		times := a.StateTimesUnixNs
		if times == nil {
			times = make(map[string]int64, 4)
		}
		t.actors[k] = &actorRec{ev: a.Actor, times: times, lastTime: a.Actor.TimeUnixNs, seq: t.seq}
	}
	t.boundLocked()
}

// remember sets m[key] to end, keeping at most limit keys: order lists them
// oldest first, and the oldest is forgotten past limit.
func remember(m map[string]jobEnd, order *[]string, limit int, key string, end jobEnd) {
	if _, ok := m[key]; !ok {
		*order = append(*order, key)
		if len(*order) > limit {
			delete(m, (*order)[0])
			*order = (*order)[1:]
		}
	}
	m[key] = end
}
