package core

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	// The news comes as the raylet pushes it: over a socket, to the
	// methods RayletPushes registers.
	raylet := servePushes(t, func() *Runtime { return rt })
	ctx := testCtx(t)
	if err := raylet.Call(ctx, rpc.MWorkerOOM, &pb.WorkerKilled{WorkerAddr: w.addr, Message: "node used 97%"}, &pb.Empty{}); err != nil {
		t.Fatalf("WorkerOOM: %v", err)
	}
	// A body that does not decode (worker_addr, a string, not UTF-8), and
	// a method that is not a push, are refused with an error.
	bad := &pb.BinaryChunk{Data: []byte{0xff, 0xfe}}
	if err := raylet.Call(ctx, rpc.MWorkerOOM, bad, &pb.Empty{}); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed WorkerOOM: %v, want a malformed-body error", err)
	}
	if err := raylet.Call(ctx, rpc.MPushTask, &pb.TaskSpec{}, &pb.TaskReply{}); err == nil || !strings.Contains(err.Error(), "unknown method") {
		t.Errorf("PushTask to the pushes: %v, want an unknown-method error", err)
	}
	close(stop)
	_, err := getValue(ctx, rt, h)
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "node used 97%") {
		t.Fatalf("Get = %v, want ErrOutOfMemory with the monitor's words", err)
	}
}

// servePushes serves what a raylet pushes to owners (RayletPushes, for the
// runtime rt returns) on a socket, and returns a connection to it: the
// raylet's end.
func servePushes(t *testing.T, rt func() *Runtime) *rpc.Conn {
	t.Helper()
	mux := rpc.NewMux("test")
	RayletPushes(mux, rt)
	addr := filepath.Join(shortDir(t), "p.sock")
	ln, err := rpc.ListenUnix(addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return mux }, nil)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := rpc.Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// What a raylet pushes before the process's runtime is made is taken and
// dropped: the raylet's call is answered.
func TestPushesBeforeTheRuntimeAreTaken(t *testing.T) {
	raylet := servePushes(t, func() *Runtime { return nil })
	ctx := testCtx(t)
	if err := raylet.Call(ctx, rpc.MWorkerOOM, &pb.WorkerKilled{WorkerAddr: "w", Message: "m"}, &pb.Empty{}); err != nil {
		t.Fatalf("WorkerOOM: %v", err)
	}
	if err := raylet.Call(ctx, rpc.MNodesDead, &pb.NodeList{Nodes: []*pb.NodeInfo{{Address: "x"}}}, &pb.Empty{}); err != nil {
		t.Fatalf("NodesDead as a request: %v", err)
	}
}
