package core

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// reportingRaylet is a fakeRaylet that also takes state events.
type reportingRaylet struct {
	*fakeRaylet
	mu      sync.Mutex
	batches []*pb.StateEvents
}

func (r *reportingRaylet) ReportEvents(b *pb.StateEvents) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
}

// The owner records each task's way through its states and sends them to
// the raylet; the last batch goes out at Close.
func TestTaskEventsReported(t *testing.T) {
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Name == "bad" {
			return &pb.TaskReply{Error: &pb.TaskError{Kind: KindApp, Message: "no"}}
		}
		return okReply(c, spec)
	})
	rl := &reportingRaylet{fakeRaylet: newFakeRaylet(w)}
	rt := newTestRuntime(t, rl, Config{Job: "j"})
	ctx := testCtx(t)
	good := submit1(t, rt, "good", TaskOptions{})
	bad := submit1(t, rt, "bad", TaskOptions{})
	_, _ = getValue(ctx, rt, good)
	_, _ = getValue(ctx, rt, bad)
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	// Each task's events since its last flush coalesce into one; find the last.
	var gotGood, gotBad bool
	rl.mu.Lock()
	for _, b := range rl.batches {
		for _, e := range b.Tasks {
			switch {
			case e.State == tasktable.TaskFinished && e.JobId == "j" && e.StateTimes[tasktable.StateIndex(tasktable.TaskFinished)] != 0:
				gotGood = true
			case e.State == tasktable.TaskFailed && e.ErrorType == "TASK_EXECUTION_EXCEPTION" && e.Error == "no":
				gotBad = true
			}
		}
	}
	rl.mu.Unlock()
	if !gotGood || !gotBad {
		t.Fatalf("events: finished %v, failed %v; want both (%d batches)", gotGood, gotBad, len(rl.batches))
	}
}

// A task whose worker the memory monitor killed fails with ErrOutOfMemory
// when it has no retries left.
func TestWorkerKilledForMemory(t *testing.T) {
	stop := make(chan struct{})
	w := newFakeWorker(t, func(*rpc.Conn, *pb.TaskSpec) *pb.TaskReply { <-stop; return nil })
	rt := newTestRuntime(t, newFakeRaylet(w), Config{})
	h := submit1(t, rt, "hog", TaskOptions{})
	eventually(t, "the task is pushed", func() bool { return rt.Pushed(h) })
	body, err := proto.Marshal(&pb.WorkerKilled{WorkerAddr: w.addr, Message: "node used 97%"})
	if err != nil {
		t.Fatal(err)
	}
	rt.HandleRaylet(rpc.MWorkerOOM, body)
	rt.HandleRaylet(rpc.MWorkerOOM, []byte{0xff})   // malformed: ignored
	rt.HandleRaylet(rpc.MNodesDead, []byte{0xff})   // malformed: ignored
	rt.HandleRaylet(rpc.MPushTask, []byte("other")) // not the raylet's: ignored
	close(stop)
	_, err = getValue(testCtx(t), rt, h)
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "node used 97%") {
		t.Fatalf("Get = %v, want ErrOutOfMemory with the monitor's words", err)
	}
}
