package tasktable

import (
	"fmt"
	"sync"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ev is an event of the task whose ID is id, padded to 16 bytes.
func ev(id string, attempt int32, state string, at int64) *pb.TaskEvent {
	return &pb.TaskEvent{TaskId: tid(id), Attempt: attempt, State: state, TimeUnixNs: at}
}

func tid(id string) []byte {
	b := make([]byte, 16)
	copy(b, id)
	return b
}

func TestTaskEventsMergeInAnyOrder(t *testing.T) {
	tb := NewTable(0, 0)
	// The worker's events arrive before the owner's.
	run := ev("t1", 0, TaskRunning, 30)
	run.NodeId, run.WorkerPid = "node1", 42
	fin := ev("t1", 0, TaskFailed, 40)
	fin.ErrorType, fin.Error = "TASK_PANIC", "boom\ngoroutine 1 [running]:"
	tb.Report(&pb.StateEvents{Tasks: []*pb.TaskEvent{run, fin}})
	sub := ev("t1", 0, TaskPendingArgs, 10)
	sub.Name, sub.Type, sub.JobId = "f", TypeNormal, "job1"
	late := ev("t1", 0, TaskFailed, 45)
	late.ErrorType, late.Error = "TASK_PANIC", "boom"
	tb.Report(&pb.StateEvents{Tasks: []*pb.TaskEvent{sub, ev("t1", 0, TaskSubmitted, 20), late, ev("t1", 0, TaskRunning, 31)}})

	l := tb.Tasks(&pb.StateQuery{})
	if len(l.Tasks) != 1 {
		t.Fatalf("%d records, want 1", len(l.Tasks))
	}
	r := l.Tasks[0]
	got := r.Task
	if got.State != TaskFailed || got.Name != "f" || got.NodeId != "node1" || got.WorkerPid != 42 || got.JobId != "job1" {
		t.Fatalf("merged record: %v", got)
	}
	if got.Error != fin.Error {
		t.Errorf("error %q: the worker's, with its stack, should win", got.Error)
	}
	if r.StateTimesUnixNs[TaskRunning] != 30 || r.StateTimesUnixNs[TaskFailed] != 40 || r.StateTimesUnixNs[TaskPendingArgs] != 10 {
		t.Errorf("state times: %v (each the first time the state was entered)", r.StateTimesUnixNs)
	}
}

func TestAttemptsAreSeparateRecords(t *testing.T) {
	tb := NewTable(0, 0)
	tb.Report(&pb.StateEvents{Tasks: []*pb.TaskEvent{ev("t", 0, TaskFailed, 1), ev("t", 1, TaskRunning, 2), ev("u", 0, TaskRunning, 3)}})
	l := tb.Tasks(&pb.StateQuery{Id: tid("t")})
	if len(l.Tasks) != 2 || l.Total != 3 {
		t.Fatalf("task t: %d attempts of %d records", len(l.Tasks), l.Total)
	}
	if c := tb.TaskCounts(); c[TaskRunning] != 2 || c[TaskFailed] != 1 {
		t.Fatalf("counts %v", c)
	}
}

func TestBoundDropsOldestFinishedFirst(t *testing.T) {
	tb := NewTable(100, 0)
	var batch []*pb.TaskEvent
	for i := range 100 {
		state := TaskFinished
		if i%2 == 0 {
			state = TaskRunning
		}
		batch = append(batch, ev(fmt.Sprint(i), 0, state, int64(i)))
	}
	tb.Report(&pb.StateEvents{Tasks: batch, DroppedTasks: 3})
	tb.Report(&pb.StateEvents{Tasks: []*pb.TaskEvent{ev("new", 0, TaskRunning, 1000)}})
	l := tb.Tasks(&pb.StateQuery{})
	if l.Total > 100 || l.DroppedTasks <= 3 {
		t.Fatalf("total %d dropped %d: the table must stay within 100 and count its drops", l.Total, l.DroppedTasks)
	}
	if c := tb.TaskCounts(); c[TaskRunning] != 51 {
		t.Fatalf("running attempts kept: %d, want all 51 (finished ones go first)", c[TaskRunning])
	}
	if l.Tasks[0].Task.TaskId == nil || string(l.Tasks[0].Task.TaskId) != string(tid("new")) {
		t.Fatalf("newest first: got %s", l.Tasks[0].Task.TaskId)
	}
	if lim := tb.Tasks(&pb.StateQuery{Limit: 5}); len(lim.Tasks) != 5 {
		t.Fatalf("limit 5 gave %d", len(lim.Tasks))
	}
}

func TestActorStates(t *testing.T) {
	tb := NewTable(0, 0)
	a := func(state string, at int64) *pb.ActorEvent {
		return &pb.ActorEvent{ActorId: []byte("a"), State: state, TimeUnixNs: at}
	}
	first := a(ActorPending, 1)
	first.ClassName, first.Name = "Counter", "c"
	alive := a(ActorAlive, 2)
	alive.NodeId, alive.Pid = "n1", 7
	restart := a(ActorRestarting, 3)
	restart.NumRestarts = 1
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{first, alive, restart, a(ActorAlive, 4)}})
	got := tb.Actors(&pb.StateQuery{}).Actors[0].Actor
	if got.State != ActorAlive || got.NumRestarts != 1 || got.ClassName != "Counter" || got.Pid != 7 {
		t.Fatalf("after a restart: %v", got)
	}
	dead := a(ActorDead, 6)
	dead.DeathCause = "killed"
	tb.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{dead, a(ActorAlive, 5)}})
	got = tb.Actors(&pb.StateQuery{Id: []byte("a")}).Actors[0].Actor
	if got.State != ActorDead || got.DeathCause != "killed" {
		t.Fatalf("DEAD is final: %v", got)
	}
	if c := tb.ActorCounts(); c[ActorDead] != 1 {
		t.Fatalf("counts %v", c)
	}
}

func TestBadEventsAreIgnored(t *testing.T) {
	tb := NewTable(0, 0)
	tb.Report(&pb.StateEvents{Tasks: []*pb.TaskEvent{{State: TaskRunning}, {TaskId: tid("x")}, {TaskId: []byte("short"), State: TaskRunning}}, Actors: []*pb.ActorEvent{{State: ActorAlive}}})
	if l := tb.Tasks(&pb.StateQuery{}); l.Total != 0 {
		t.Fatalf("events without an ID or a state were kept: %v", l.Tasks)
	}
}

// A reporter that holds the token could claim any count: the table keeps
// only the plausible ones.
func TestForgedCountsAreIgnored(t *testing.T) {
	tb := NewTable(0, 0)
	tb.Report(&pb.StateEvents{DroppedTasks: 100777761280})
	tb.Report(&pb.StateEvents{DroppedTasks: -5})
	tb.Report(&pb.StateEvents{DroppedTasks: 3})
	if d := tb.Tasks(&pb.StateQuery{}).DroppedTasks; d != 3 {
		t.Fatalf("dropped tasks = %d after a forged, a negative and a real count of 3", d)
	}
}

func TestConcurrentReportsAndReads(t *testing.T) {
	tb := NewTable(500, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 300 {
				tb.Report(&pb.StateEvents{Tasks: []*pb.TaskEvent{ev(fmt.Sprint(g, "-", i), 0, TaskRunning, int64(i))}})
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				_ = tb.Tasks(&pb.StateQuery{Limit: 10})
				_ = tb.TaskCounts()
			}
		}()
	}
	wg.Wait()
	if l := tb.Tasks(&pb.StateQuery{}); l.Total > 500 || l.Total+l.DroppedTasks != 1200 {
		t.Fatalf("total %d + dropped %d, want 1200 reported and at most 500 kept", l.Total, l.DroppedTasks)
	}
}

func BenchmarkReport(b *testing.B) {
	tb := NewTable(0, 0)
	batch := make([]*pb.TaskEvent, 100)
	for i := 0; b.Loop(); i++ {
		for j := range batch {
			batch[j] = ev(fmt.Sprint(i*100+j), 0, TaskRunning, int64(j))
		}
		tb.Report(&pb.StateEvents{Tasks: batch})
	}
}
