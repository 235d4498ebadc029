package tasktable

import (
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func actorEv(id, job, state string, at int64) *pb.ActorEvent {
	return &pb.ActorEvent{ActorId: []byte(id), JobId: job, State: state, TimeUnixNs: at}
}

func actorByID(t *testing.T, tb *Table, id string) *pb.ActorEvent {
	t.Helper()
	l := tb.Actors(&pb.StateQuery{Id: []byte(id)})
	if len(l.Actors) != 1 {
		t.Fatalf("actor %s: %d records", id, len(l.Actors))
	}
	return l.Actors[0].Actor
}

func TestJobEndKillsItsActorsButDetachedOnes(t *testing.T) {
	tb := NewTable(0, 0)
	det := actorEv("det", "j1", ActorAlive, 10)
	det.Detached, det.Name = true, "keeper"
	named := actorEv("named", "j1", ActorAlive, 10)
	named.Name = "n"
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j1", ActorAlive, 10), det, named, actorEv("other", "j2", ActorAlive, 10)}})

	changed := tb.JobEnded("j1", CauseOwnerDied, "owner pid 7 on node n1 died", 20)
	if len(changed) != 1 || string(changed[0].Actor.ActorId) != "named" {
		t.Errorf("changed durable records: %v, want the named actor's alone", changed)
	}
	a := actorByID(t, tb, "a")
	if a.State != ActorDead || a.DeathCause != CauseOwnerDied || a.DeathMessage != "owner pid 7 on node n1 died" || a.TimeUnixNs != 20 {
		t.Errorf("actor of the ended job: %v", a)
	}
	if d := actorByID(t, tb, "det"); d.State != ActorAlive || d.DeathCause != "" {
		t.Errorf("detached actor: %v, want ALIVE", d)
	}
	if o := actorByID(t, tb, "other"); o.State != ActorAlive {
		t.Errorf("actor of another job: %v", o)
	}
	// Events that come after the job's end do not bring its actors back;
	// an actor first heard of then is dead already.
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j1", ActorAlive, 30), actorEv("late", "j1", ActorAlive, 25)}})
	if a := actorByID(t, tb, "a"); a.State != ActorDead || a.DeathCause != CauseOwnerDied {
		t.Errorf("after a late ALIVE: %v", a)
	}
	if l := actorByID(t, tb, "late"); l.State != ActorDead || l.DeathCause != CauseOwnerDied {
		t.Errorf("actor first heard of after its job ended: %v", l)
	}
	if c := tb.ActorCounts(); c[ActorAlive] != 2 || c[ActorDead] != 3 {
		t.Errorf("counts %v, want 2 ALIVE (detached, other job) and 3 DEAD", c)
	}
}

func TestDeathKeepsItsFirstCause(t *testing.T) {
	tb := NewTable(0, 0)
	dead := actorEv("a", "j", ActorDead, 10)
	dead.DeathCause, dead.DeathMessage = CauseKilled, "killed by rayo.Kill"
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j", ActorAlive, 5), dead}})
	tb.JobEnded("j", CauseJobFinished, "job j finished", 20)
	if a := actorByID(t, tb, "a"); a.DeathCause != CauseKilled || a.TimeUnixNs != 10 {
		t.Errorf("killed actor after its job ended: %v, want KILLED at 10", a)
	}
}

func TestNodeDiedKillsActorsThatMayNotRestart(t *testing.T) {
	tb := NewTable(0, 0)
	mk := func(id string, maxRestarts, restarts int32) *pb.ActorEvent {
		e := actorEv(id, "j", ActorPending, 5)
		e.ClassName, e.NodeId, e.MaxRestarts = "C", "n1", maxRestarts
		return e
	}
	up := func(id string, restarts int32) *pb.ActorEvent {
		e := actorEv(id, "j", ActorAlive, 10)
		e.NumRestarts = restarts
		return e
	}
	elsewhere := mk("elsewhere", 0, 0)
	elsewhere.NodeId = "n2"
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{mk("none", 0, 0), mk("spent", 2, 2), mk("left", 2, 1), mk("always", -1, 5), elsewhere,
		up("none", 0), up("spent", 2), up("left", 1), up("always", 5), up("elsewhere", 0)}})
	// The owner saw the process die before the control store saw the node.
	gone := actorEv("spent", "j", ActorDead, 15)
	gone.DeathCause = CauseOutOfRestarts
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{gone}})

	tb.NodeDied("n1", "node n1 died: no heartbeat for 5s", 20)
	for id, want := range map[string]string{"none": CauseNodeDied, "spent": CauseNodeDied, "left": "", "always": "", "elsewhere": ""} {
		a := actorByID(t, tb, id)
		if a.DeathCause != want || (want == "") != (a.State == ActorAlive) {
			t.Errorf("actor %s: %s %q, want cause %q", id, a.State, a.DeathCause, want)
		}
	}
	if a := actorByID(t, tb, "none"); a.DeathMessage != "node n1 died: no heartbeat for 5s" {
		t.Errorf("message %q", a.DeathMessage)
	}
	// The events of an actor that come after its node died: the owner's
	// and the worker's batches had not come out before.
	late := mk("late", 0, 0)
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{late, up("late", 0)}})
	lateDead := actorEv("late", "j", ActorDead, 40)
	lateDead.DeathCause = CauseOutOfRestarts
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{lateDead}})
	if a := actorByID(t, tb, "late"); a.State != ActorDead || a.DeathCause != CauseNodeDied {
		t.Errorf("actor heard of after its node died: %s %s", a.State, a.DeathCause)
	}
	relaunched := mk("relaunched", -1, 0)
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{relaunched, up("relaunched", 0)}})
	if a := actorByID(t, tb, "relaunched"); a.State != ActorAlive {
		t.Errorf("restartable actor heard of after its node died: %s %s", a.State, a.DeathCause)
	}
}

func TestRestoreListsKeptActors(t *testing.T) {
	tb := NewTable(0, 0)
	e := actorEv("det", "j1", ActorAlive, 10)
	e.Detached, e.Name, e.ClassName = true, "keeper", "Counter"
	got := tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{e, actorEv("plain", "j1", ActorAlive, 10)}})
	if len(got) != 1 || !Durable(got[0]) {
		t.Fatalf("durable records of the batch: %v", got)
	}
	fresh := NewTable(0, 0)
	fresh.Restore(append(got, &pb.ActorRecord{}, &pb.ActorRecord{Actor: &pb.ActorEvent{}}))
	l := fresh.Actors(&pb.StateQuery{})
	if len(l.Actors) != 1 || l.Actors[0].Actor.State != ActorAlive || l.Actors[0].Actor.Name != "keeper" || l.Actors[0].StateTimesUnixNs[ActorAlive] != 10 {
		t.Fatalf("restored table: %v", l.Actors)
	}
	// Its owner's later events merge into it as before.
	dead := actorEv("det", "", ActorDead, 30)
	dead.DeathCause = CauseKilled
	fresh.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{dead}})
	if a := actorByID(t, fresh, "det"); a.State != ActorDead || a.DeathCause != CauseKilled || a.ClassName != "Counter" {
		t.Errorf("after its death: %v", a)
	}
}

// TestPendingCreationComesFirst: an actor's PENDING_CREATION (from its
// name's registration, on the control store's clock) gives way to any
// later state whatever its time, and never takes over from one.
func TestPendingCreationComesFirst(t *testing.T) {
	tb := NewTable(0, 0)
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j1", ActorPending, 100)}})
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j1", ActorAlive, 50)}}) // a clock behind
	if a := actorByID(t, tb, "a"); a.State != ActorAlive {
		t.Fatalf("ALIVE after PENDING_CREATION, on a clock behind: %s", a.State)
	}
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j1", ActorPending, 200)}}) // the owner's, late
	if a := actorByID(t, tb, "a"); a.State != ActorAlive {
		t.Fatalf("a late PENDING_CREATION took over: %s", a.State)
	}
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{actorEv("a", "j1", ActorRestarting, 40)}}) // older than ALIVE
	if a := actorByID(t, tb, "a"); a.State != ActorAlive {
		t.Fatalf("an older RESTARTING took over from ALIVE: %s", a.State)
	}
}
