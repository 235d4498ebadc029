package core

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// A task runs on the worker its lease names, its result comes back, and
// the idle lease is given back.
func TestSubmitRunsOnLeasedWorker(t *testing.T) {
	w := newFakeWorker(t, nil)
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{Job: "j1"})
	ctx := testCtx(t)

	h := submit1(t, rt, "add", TaskOptions{Resources: map[string]float64{"CPU": 1}, MaxRetries: 2}, Arg{Value: value("1")})
	got, err := getValue(ctx, rt, h)
	if err != nil || got != "add:0" {
		t.Fatalf("Get = %q, %v; want add:0", got, err)
	}
	reqs, _, _ := rl.snapshot()
	if len(reqs) != 1 {
		t.Fatalf("%d lease requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.OwnerAddr != rt.Addr() || r.JobId != "j1" || len(r.Resources) != 1 || r.Resources[0].Name != "CPU" || r.Resources[0].Quantity != 1 {
		t.Errorf("lease request = %v", r)
	}
	if !r.Retriable || r.TaskName != "add" {
		t.Errorf("lease request: retriable %v, task name %q", r.Retriable, r.TaskName)
	}
	specs := w.pushed()
	if len(specs) != 1 || specs[0].Name != "add" || specs[0].OwnerAddr != rt.Addr() || string(specs[0].Args[0].Value.Inline) != "1" {
		t.Fatalf("pushed %v", specs)
	}
	eventually(t, "the idle lease is returned", func() bool {
		_, ret, _ := rl.snapshot()
		return len(ret) == 1 && ret[0].LeaseId == 1 && !ret[0].WorkerFailed
	})
	if s := rt.Stats(); s.Tasks != 0 || s.Objects != 1 || s.Owned != 1 {
		t.Errorf("Stats = %+v, want no task and the one result", s)
	}
}

// A ref argument is resolved to its value before the task is pushed, and
// the task is not pushed while it is pending.
func TestSubmitResolvesRefArgs(t *testing.T) {
	gate := make(chan struct{})
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Name == "a" {
			<-gate
		}
		return okReply(c, spec)
	})
	rt := newTestRuntime(t, newFakeRaylet(w), Config{})
	ctx := testCtx(t)

	a := submit1(t, rt, "a", TaskOptions{})
	b := submit1(t, rt, "b", TaskOptions{}, Arg{Ref: a}, Arg{Ref: a})
	eventually(t, "a is pushed", func() bool { return rt.Pushed(a) })
	if rt.Pushed(b) {
		t.Fatal("b was pushed before its argument was ready")
	}
	close(gate)
	if got, err := getValue(ctx, rt, b); err != nil || got != "b:0" {
		t.Fatalf("Get(b) = %q, %v", got, err)
	}
	var spec *pb.TaskSpec
	for _, s := range w.pushed() {
		if s.Name == "b" {
			spec = s
		}
	}
	for i, arg := range spec.Args {
		if arg.Ref == nil || string(arg.Value.GetInline()) != "a:0" {
			t.Errorf("b's argument %d = %v, want the ref to a with its value", i, arg)
		}
	}
}

// A task whose argument failed fails with that error and never runs.
func TestFailedArgumentFailsTask(t *testing.T) {
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Name == "bad" {
			return &pb.TaskReply{Error: &pb.TaskError{Kind: KindApp, Message: "boom", TaskName: spec.Name}}
		}
		return okReply(c, spec)
	})
	rt := newTestRuntime(t, newFakeRaylet(w), Config{})
	ctx := testCtx(t)
	bad := submit1(t, rt, "bad", TaskOptions{})
	next := submit1(t, rt, "next", TaskOptions{}, Arg{Ref: bad})
	_, err := getValue(ctx, rt, next)
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindApp || te.Message != "boom" || !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("Get(next) = %v, want bad's app error", err)
	}
	for _, s := range w.pushed() {
		if s.Name == "next" {
			t.Fatal("next ran although its argument failed")
		}
	}
}

// Bad input to Submit: a freed argument, a nil handle, a closed runtime.
func TestSubmitBadInput(t *testing.T) {
	w := newFakeWorker(t, nil)
	rt := newTestRuntime(t, newFakeRaylet(w), Config{})
	ctx := testCtx(t)
	h, err := rt.Put(ctx, value("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Release()
	h.Release() // twice is harmless
	if _, err := rt.Submit(ctx, TaskOptions{Function: "f", NumReturns: 1}, []Arg{{Ref: h}}); !errors.Is(err, ErrObjectFreed) {
		t.Fatalf("Submit with a freed argument = %v, want ErrObjectFreed", err)
	}
	if s := rt.Stats(); s.Objects != 0 || s.Tasks != 0 {
		t.Fatalf("a refused Submit left %+v", s)
	}
	if _, err := rt.Get(ctx, nil); !errors.Is(err, ErrNilRef) {
		t.Fatalf("Get(nil) = %v, want ErrNilRef", err)
	}
	if _, _, err := rt.Wait(ctx, []*Handle{nil}, 1); !errors.Is(err, ErrNilRef) {
		t.Fatalf("Wait(nil) = %v, want ErrNilRef", err)
	}
	if err := rt.Cancel(testCtx(t), nil); !errors.Is(err, ErrNilRef) {
		t.Fatalf("Cancel(nil) = %v, want ErrNilRef", err)
	}
	if _, err := rt.Get(ctx, h); !errors.Is(err, ErrObjectFreed) {
		t.Fatalf("Get of a released handle = %v, want ErrObjectFreed", err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Submit(ctx, TaskOptions{Function: "f", NumReturns: 1}, nil); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Submit after Close = %v, want ErrShutdown", err)
	}
	if _, err := rt.Put(ctx, value("y"), nil); !errors.Is(err, ErrShutdown) {
		t.Fatalf("Put after Close = %v, want ErrShutdown", err)
	}
}

// A reply with fewer results than the task returns fails the task.
func TestWrongNumberOfReturns(t *testing.T) {
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		return &pb.TaskReply{Returns: []*pb.Locator{{Inline: []byte("only one")}}}
	})
	rt := newTestRuntime(t, newFakeRaylet(w), Config{})
	hs, err := rt.Submit(testCtx(t), TaskOptions{Function: "f", Name: "two", NumReturns: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		_, err := getValue(testCtx(t), rt, h)
		if err == nil || !strings.Contains(err.Error(), "returned 1 values, expected 2") {
			t.Fatalf("Get = %v, want the count mismatch", err)
		}
	}
}

// Many tasks of one shape ask for at most maxLeaseRequests leases at once,
// share them, and every lease granted is given back.
func TestLeasesBoundedAndReturned(t *testing.T) {
	w := newFakeWorker(t, nil)
	rl := newFakeRaylet(w)
	var held []func(*pb.LeaseReply, error)
	grants := make(chan struct{}, 100)
	rl.grant = func(req *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
		rl.mu.Lock()
		held = append(held, cb)
		rl.mu.Unlock()
		grants <- struct{}{}
	}
	rt := newTestRuntime(t, rl, Config{})
	ctx := testCtx(t)
	var hs []*Handle
	for i := 0; i < 3*maxLeaseRequests; i++ {
		hs = append(hs, submit1(t, rt, "t", TaskOptions{}))
	}
	for i := 0; i < maxLeaseRequests; i++ {
		<-grants
	}
	rl.mu.Lock()
	n := len(rl.requests)
	cbs := held
	rl.mu.Unlock()
	if n != maxLeaseRequests {
		t.Fatalf("%d lease requests for %d tasks, want %d", n, len(hs), maxLeaseRequests)
	}
	for i, cb := range cbs {
		cb(&pb.LeaseReply{LeaseId: uint64(i + 1), WorkerAddr: w.addr}, nil)
	}
	for _, h := range hs {
		if _, err := getValue(ctx, rt, h); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every lease is returned", func() bool {
		_, ret, _ := rl.snapshot()
		return len(ret) == len(cbs)
	})
	if got := len(w.pushed()); got != len(hs) {
		t.Fatalf("%d pushes for %d tasks", got, len(hs))
	}
}

// A lease the raylet refuses fails the queued tasks with the reason.
func TestLeaseRefused(t *testing.T) {
	cases := []struct {
		name  string
		reply *pb.LeaseReply
		err   error
		kind  string
		is    error
		text  string
	}{
		{"infeasible", &pb.LeaseReply{Error: "no node has GPU=8"}, nil, KindInfeasible, ErrInfeasible, "no node has GPU=8"},
		{"failure", &pb.LeaseReply{Failure: "job ended"}, nil, KindSystem, ErrTaskFailed, "job ended"},
		{"unreachable", nil, errors.New("raylet connection closed"), KindSystem, ErrTaskFailed, "raylet connection closed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rl := newFakeRaylet(nil)
			rl.grant = func(_ *pb.RequestLease, cb func(*pb.LeaseReply, error)) { cb(c.reply, c.err) }
			rt := newTestRuntime(t, rl, Config{})
			h := submit1(t, rt, "t", TaskOptions{})
			_, err := getValue(testCtx(t), rt, h)
			var te *TaskError
			if !errors.As(err, &te) || te.Kind != c.kind || !errors.Is(err, c.is) || !strings.Contains(te.Message, c.text) || te.Task != "t" {
				t.Fatalf("Get = %#v, want kind %s with %q", err, c.kind, c.text)
			}
			if rt.Stats().Tasks != 0 {
				t.Fatal("the failed task is still counted")
			}
		})
	}
}

// A granted worker that cannot be reached is given back as failed, and the
// task runs on the next lease.
func TestLeasedWorkerUnreachable(t *testing.T) {
	w := newFakeWorker(t, nil)
	rl := newFakeRaylet(w)
	first := true
	rl.grant = func(_ *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
		addr := w.addr
		if first {
			first, addr = false, w.addr+".gone"
		}
		cb(&pb.LeaseReply{LeaseId: 7, WorkerAddr: addr}, nil)
	}
	rt := newTestRuntime(t, rl, Config{})
	h := submit1(t, rt, "t", TaskOptions{})
	if _, err := getValue(testCtx(t), rt, h); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unreachable worker's lease is returned as failed", func() bool {
		_, ret, _ := rl.snapshot()
		return len(ret) > 0 && ret[0].WorkerFailed && ret[0].LeaseId == 7
	})
}

// A worker that dies mid-task fails the task when it has no retries, and
// its lease goes back marked failed.
func TestWorkerDiesMidTask(t *testing.T) {
	w := newFakeWorker(t, func(*rpc.Conn, *pb.TaskSpec) *pb.TaskReply { return nil })
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	h := submit1(t, rt, "t", TaskOptions{})
	_, err := getValue(testCtx(t), rt, h)
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindWorkerDied || !errors.Is(err, ErrWorkerDied) || !strings.Contains(te.Message, "1 attempts") {
		t.Fatalf("Get = %v, want ErrWorkerDied after 1 attempt", err)
	}
	eventually(t, "the dead worker's lease is returned", func() bool {
		_, ret, _ := rl.snapshot()
		return len(ret) == 1 && ret[0].WorkerFailed
	})
}

// With retries, a task whose worker died runs again, as the next attempt.
func TestWorkerDiesTaskRetried(t *testing.T) {
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Attempt == 0 {
			return nil
		}
		return okReply(c, spec)
	})
	rt := newTestRuntime(t, newFakeRaylet(w), Config{})
	h := submit1(t, rt, "t", TaskOptions{MaxRetries: 1})
	if got, err := getValue(testCtx(t), rt, h); err != nil || got != "t:0" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	specs := w.pushed()
	if len(specs) != 2 || specs[0].Attempt != 0 || specs[1].Attempt != 1 {
		t.Fatalf("pushed %d specs, want attempts 0 and 1", len(specs))
	}
}

// An application error is retried only with RetryExceptions.
func TestAppErrorRetry(t *testing.T) {
	for _, retryApp := range []bool{false, true} {
		w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
			if spec.Attempt == 0 {
				return &pb.TaskReply{Error: &pb.TaskError{Kind: KindApp, Message: "flaky"}}
			}
			return okReply(c, spec)
		})
		rt := newTestRuntime(t, newFakeRaylet(w), Config{})
		h := submit1(t, rt, "t", TaskOptions{MaxRetries: 1, RetryExceptions: retryApp})
		got, err := getValue(testCtx(t), rt, h)
		if retryApp && (err != nil || got != "t:0") {
			t.Fatalf("with RetryExceptions: Get = %q, %v", got, err)
		}
		if !retryApp && (err == nil || !strings.Contains(err.Error(), "flaky")) {
			t.Fatalf("without RetryExceptions: Get = %q, %v, want the app error", got, err)
		}
	}
}

// A reply that does not decode counts as the worker's death.
func TestMalformedTaskReply(t *testing.T) {
	w := newFakeWorker(t, nil)
	// Under the lock: the worker's goroutine reads it after a message
	// crossed a socket, which the race detector does not see as ordering.
	w.mu.Lock()
	w.raw = []byte{0xff, 0xff, 0xff} // not a TaskReply
	w.mu.Unlock()
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	h := submit1(t, rt, "t", TaskOptions{})
	_, err := getValue(testCtx(t), rt, h)
	if !errors.Is(err, ErrWorkerDied) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("Get = %v, want ErrWorkerDied for a corrupt reply", err)
	}
	eventually(t, "the lease is returned as failed", func() bool {
		_, ret, _ := rl.snapshot()
		return len(ret) == 1 && ret[0].WorkerFailed
	})
}

// Cancel of a queued task fails it at once; of a running one, tells its
// worker, and the task fails as cancelled when the worker goes.
func TestCancel(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		rl := newFakeRaylet(nil)
		rl.grant = func(*pb.RequestLease, func(*pb.LeaseReply, error)) {} // never granted
		rt := newTestRuntime(t, rl, Config{})
		h := submit1(t, rt, "t", TaskOptions{MaxRetries: 3})
		if err := rt.Cancel(testCtx(t), h); err != nil {
			t.Fatal(err)
		}
		if _, err := getValue(testCtx(t), rt, h); !errors.Is(err, ErrTaskCancelled) {
			t.Fatalf("Get = %v, want ErrTaskCancelled", err)
		}
		if err := rt.Cancel(testCtx(t), h); err != nil {
			t.Fatalf("a second Cancel = %v", err)
		}
	})
	t.Run("running", func(t *testing.T) {
		stop := make(chan struct{})
		w := newFakeWorker(t, func(*rpc.Conn, *pb.TaskSpec) *pb.TaskReply { <-stop; return nil })
		rt := newTestRuntime(t, newFakeRaylet(w), Config{})
		h := submit1(t, rt, "t", TaskOptions{MaxRetries: 3})
		eventually(t, "the task is pushed", func() bool { return rt.Pushed(h) })
		// Cancel returns once the task has settled: when the worker goes.
		cancelled := make(chan error, 1)
		go func() { cancelled <- rt.Cancel(testCtx(t), h) }()
		eventually(t, "the worker is told", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.cancelled) == 1
		})
		select {
		case err := <-cancelled:
			t.Fatalf("Cancel returned %v before the task settled", err)
		default:
		}
		close(stop) // the worker exits, as a real one does
		if err := <-cancelled; err != nil {
			t.Fatal(err)
		}
		if _, err := getValue(testCtx(t), rt, h); !errors.Is(err, ErrTaskCancelled) {
			t.Fatalf("Get = %v, want ErrTaskCancelled (not a retry)", err)
		}
		if n := len(w.pushed()); n != 1 {
			t.Fatalf("a cancelled task was pushed %d times", n)
		}
	})
}

// Close fails pending tasks with ErrShutdown and gives leases back.
func TestCloseFailsPending(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply { <-stop; return okReply(c, spec) })
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	h := submit1(t, rt, "t", TaskOptions{})
	eventually(t, "the task is pushed", func() bool { return rt.Pushed(h) })
	done := make(chan error, 1)
	go func() { _, err := rt.Get(context.Background(), h); done <- err }()
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrShutdown) {
		t.Fatalf("Get across Close = %v, want ErrShutdown", err)
	}
	if _, ret, _ := rl.snapshot(); len(ret) != 1 {
		t.Fatalf("%d leases returned at Close, want 1", len(ret))
	}
	if err := rt.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// A lease spilled to another node is asked of that node's raylet, and the
// lease goes back there.
func TestLeaseSpillback(t *testing.T) {
	w := newFakeWorker(t, nil)
	local, remote := newFakeRaylet(nil), newFakeRaylet(w)
	local.grant = func(_ *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
		cb(&pb.LeaseReply{SpillTo: "10.0.0.9:1"}, nil)
	}
	var dialed string
	rt := newTestRuntime(t, local, Config{DialRaylet: func(_ context.Context, addr string, _ rpc.Handler) (RayletClient, error) {
		dialed = addr
		return remote, nil
	}})
	h := submit1(t, rt, "t", TaskOptions{})
	if _, err := getValue(testCtx(t), rt, h); err != nil {
		t.Fatal(err)
	}
	reqs, _, _ := remote.snapshot()
	if dialed != "10.0.0.9:1" || len(reqs) != 1 || !reqs[0].Spilled {
		t.Fatalf("dialed %q, remote requests %v; want one spilled request there", dialed, reqs)
	}
	eventually(t, "the lease goes back to the remote raylet", func() bool {
		_, ret, _ := remote.snapshot()
		_, lret, _ := local.snapshot()
		return len(ret) == 1 && len(lret) == 0
	})
}

// Wait returns the ready refs once n are, and the rest in order; a Get
// that must wait in a worker lends its CPU back meanwhile.
func TestWaitAndBlocked(t *testing.T) {
	gate := make(chan struct{})
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Name == "slow" {
			<-gate
		}
		return okReply(c, spec)
	})
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{IsWorker: true})
	ctx := testCtx(t)
	slow := submit1(t, rt, "slow", TaskOptions{})
	fast := submit1(t, rt, "fast", TaskOptions{})
	ready, rest, err := rt.Wait(ctx, []*Handle{slow, fast}, 1)
	if err != nil || len(ready) != 1 || ready[0] != 1 || len(rest) != 1 || rest[0] != 0 {
		t.Fatalf("Wait = %v, %v, %v; want [1] [0]", ready, rest, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := rt.Get(short, slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get past its deadline = %v", err)
	}
	close(gate)
	locs, err := rt.GetMany(ctx, []*Handle{slow, fast})
	if err != nil || string(locs[0].Inline) != "slow:0" || string(locs[1].Inline) != "fast:0" {
		t.Fatalf("GetMany = %v, %v", locs, err)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.blocked) < 2 || len(rl.blocked)%2 != 0 || !rl.blocked[0] || rl.blocked[len(rl.blocked)-1] {
		t.Fatalf("SetBlocked calls %v, want true/false pairs", rl.blocked)
	}
}
