package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func createActor(t *testing.T, rt *Runtime, opts ActorOptions, args ...Arg) *ActorHandle {
	t.Helper()
	opts.Class, opts.Name = "ctor", "Counter"
	h, err := rt.CreateActor(context.Background(), opts, args)
	if err != nil {
		t.Fatalf("CreateActor: %v", err)
	}
	return h
}

func call(t *testing.T, rt *Runtime, a *ActorHandle, name string, args ...Arg) *Handle {
	t.Helper()
	hs, err := rt.SubmitActorTask(context.Background(), a, TaskOptions{Function: "m", Name: name, NumReturns: 1}, args)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return hs[0]
}

// methodNames are the names of the method calls a worker received, in
// order (the creation left out).
func methodNames(w *fakeWorker) []string {
	var out []string
	for _, s := range w.pushed() {
		if len(s.ActorId) > 0 && !s.ActorCreate {
			out = append(out, s.Name)
		}
	}
	return out
}

// An actor is created on a dedicated lease, and the calls of one caller
// run in the order they were submitted, even when a later call's
// arguments are ready first.
func TestActorCallsKeepSubmissionOrder(t *testing.T) {
	gate := make(chan struct{})
	w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
		if spec.Name == "slow" {
			<-gate
		}
		return okReply(c, spec)
	})
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	ctx := testCtx(t)
	a := createActor(t, rt, ActorOptions{Resources: map[string]float64{"CPU": 1}})
	slow := submit1(t, rt, "slow", TaskOptions{})
	var calls []*Handle
	calls = append(calls, call(t, rt, a, "m0", Arg{Ref: slow})) // waits for slow
	for i := 1; i < 20; i++ {
		calls = append(calls, call(t, rt, a, fmt.Sprintf("m%d", i)))
	}
	if rt.Pushed(calls[1]) {
		t.Fatal("a call was pushed before the one submitted ahead of it")
	}
	close(gate)
	for i, h := range calls {
		if got, err := getValue(ctx, rt, h); err != nil || got != fmt.Sprintf("m%d:0", i) {
			t.Fatalf("call %d = %q, %v", i, got, err)
		}
	}
	names := methodNames(w)
	for i, n := range names {
		if n != fmt.Sprintf("m%d", i) {
			t.Fatalf("the worker ran %v, want m0..m19 in order", names)
		}
	}
	reqs, _, _ := rl.snapshot()
	var dedicated int
	for _, r := range reqs {
		if r.Dedicated {
			dedicated++
			if !bytes.Equal(r.ActorId, a.ID[:]) {
				t.Errorf("actor lease for %x, want %x", r.ActorId, a.ID[:])
			}
		}
	}
	if dedicated != 1 {
		t.Fatalf("%d dedicated leases, want 1", dedicated)
	}
}

// A constructor that fails fails every call with its error; a refused
// lease fails them with the reason.
func TestActorCreationFails(t *testing.T) {
	t.Run("constructor", func(t *testing.T) {
		w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
			if spec.ActorCreate {
				return &pb.TaskReply{Error: &pb.TaskError{Kind: KindApp, Message: "bad config"}}
			}
			return okReply(c, spec)
		})
		rt := newTestRuntime(t, newFakeRaylet(w), Config{})
		a := createActor(t, rt, ActorOptions{})
		_, err := getValue(testCtx(t), rt, call(t, rt, a, "m"))
		if err == nil || !strings.Contains(err.Error(), "failed to start: bad config") {
			t.Fatalf("call = %v, want the constructor's error", err)
		}
		if len(methodNames(w)) != 0 {
			t.Fatal("a call ran on an actor that failed to start")
		}
	})
	t.Run("lease refused", func(t *testing.T) {
		rl := newFakeRaylet(nil)
		rl.grant = func(_ *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
			cb(&pb.LeaseReply{Error: "no node has TPU=1"}, nil)
		}
		rt := newTestRuntime(t, rl, Config{})
		a := createActor(t, rt, ActorOptions{})
		_, err := getValue(testCtx(t), rt, call(t, rt, a, "m"))
		if !errors.Is(err, ErrInfeasible) || !strings.Contains(err.Error(), "TPU=1") {
			t.Fatalf("call = %v, want ErrInfeasible", err)
		}
	})
	t.Run("detached without a name", func(t *testing.T) {
		rt := newTestRuntime(t, newFakeRaylet(nil), Config{})
		_, err := rt.CreateActor(context.Background(), ActorOptions{Class: "c", Name: "C", Detached: true}, nil)
		if err == nil || !strings.Contains(err.Error(), "needs a name") {
			t.Fatalf("CreateActor = %v", err)
		}
	})
	t.Run("name taken", func(t *testing.T) {
		rl := newFakeRaylet(newFakeWorker(t, nil))
		rt := newTestRuntime(t, rl, Config{})
		createActor(t, rt, ActorOptions{RegisterName: "x"})
		_, err := rt.CreateActor(context.Background(), ActorOptions{Class: "c", Name: "C", RegisterName: "x"}, nil)
		if err == nil || !strings.Contains(err.Error(), "taken") {
			t.Fatalf("CreateActor with a taken name = %v", err)
		}
		found, err := rt.LookupActor(context.Background(), "", "x")
		if err != nil || found.OwnerAddr != rt.Addr() {
			t.Fatalf("LookupActor = %v, %v", found, err)
		}
	})
}

// When an actor's process dies: without restarts its calls fail with
// ErrActorDied; with one, the constructor runs again and a call in flight
// with a retry runs on the new process.
func TestActorProcessDies(t *testing.T) {
	t.Run("no restart", func(t *testing.T) {
		w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
			if spec.Name == "die" {
				return nil
			}
			return okReply(c, spec)
		})
		rl := newFakeRaylet(w)
		rt := newTestRuntime(t, rl, Config{})
		a := createActor(t, rt, ActorOptions{})
		if _, err := getValue(testCtx(t), rt, call(t, rt, a, "die")); !errors.Is(err, ErrActorDied) {
			t.Fatalf("the call in flight = %v, want ErrActorDied", err)
		}
		if _, err := getValue(testCtx(t), rt, call(t, rt, a, "after")); !errors.Is(err, ErrActorDied) {
			t.Fatalf("a later call = %v, want ErrActorDied", err)
		}
		eventually(t, "the actor's lease goes back as failed", func() bool {
			_, ret, _ := rl.snapshot()
			return len(ret) == 1
		})
	})
	t.Run("restart", func(t *testing.T) {
		w := newFakeWorker(t, func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
			if spec.Name == "die" && spec.Attempt == 0 {
				return nil
			}
			return okReply(c, spec)
		})
		rt := newTestRuntime(t, newFakeRaylet(w), Config{})
		a := createActor(t, rt, ActorOptions{MaxRestarts: 1, MaxTaskRetries: 1})
		if got, err := getValue(testCtx(t), rt, call(t, rt, a, "die")); err != nil || got != "die:0" {
			t.Fatalf("the retried call = %q, %v", got, err)
		}
		var creations int
		for _, s := range w.pushed() {
			if s.ActorCreate {
				creations++
			}
		}
		if creations != 2 {
			t.Fatalf("the constructor ran %d times, want 2", creations)
		}
		if _, err := getValue(testCtx(t), rt, call(t, rt, a, "next")); err != nil {
			t.Fatalf("a call after the restart = %v", err)
		}
	})
}

// Kill stops the actor's process and fails later calls; releasing the
// last handle stops an actor nobody can call.
func TestActorKillAndRelease(t *testing.T) {
	w := newFakeWorker(t, nil)
	rl := newFakeRaylet(w)
	rt := newTestRuntime(t, rl, Config{})
	ctx := testCtx(t)
	a := createActor(t, rt, ActorOptions{MaxRestarts: -1})
	if _, err := getValue(ctx, rt, call(t, rt, a, "m")); err != nil {
		t.Fatal(err)
	}
	if err := rt.KillActor(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the worker is told to exit", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.killed) == 1 && bytes.Equal(w.killed[0], a.ID[:])
	})
	if _, err := getValue(ctx, rt, call(t, rt, a, "late")); !errors.Is(err, ErrActorDied) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("a call after Kill = %v, want ErrActorDied", err)
	}
	if err := rt.KillActor(ctx, &ActorHandle{ID: ids.NewTaskID()}); !errors.Is(err, ErrActorDied) {
		t.Fatalf("Kill of an unknown actor = %v", err)
	}

	// A real actor has a process of its own: b gets another worker.
	rl.mu.Lock()
	rl.worker = newFakeWorker(t, nil)
	rl.mu.Unlock()
	b := createActor(t, rt, ActorOptions{})
	if _, err := getValue(ctx, rt, call(t, rt, b, "m")); err != nil {
		t.Fatal(err)
	}
	_, before, _ := rl.snapshot()
	b.Release()
	eventually(t, "the unreferenced actor's lease is returned", func() bool {
		_, ret, _ := rl.snapshot()
		return len(ret) == len(before)+1
	})
}

// A process holding a borrowed handle finds the actor through its owner
// and calls it directly; with the owner gone, its calls fail.
func TestBorrowedActor(t *testing.T) {
	w := newFakeWorker(t, nil)
	owner := newTestRuntime(t, newFakeRaylet(w), Config{})
	borrower := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	a := createActor(t, owner, ActorOptions{})
	b := borrower.ActorHandleFor(a.ID, owner.Addr())
	if b.Runtime() != borrower {
		t.Fatal("handle of the wrong runtime")
	}
	if got, err := getValue(ctx, borrower, call(t, borrower, b, "hello")); err != nil || got != "hello:0" {
		t.Fatalf("borrowed call = %q, %v", got, err)
	}
	if owner.Stats().Tasks != 0 {
		t.Fatal("the borrower's call went through the owner")
	}
	orphan := borrower.ActorHandleFor(ids.NewTaskID(), owner.Addr()+".gone")
	if _, err := getValue(ctx, borrower, call(t, borrower, orphan, "m")); !errors.Is(err, ErrActorDied) || !strings.Contains(err.Error(), "owner is gone") {
		t.Fatalf("call with the owner gone = %v", err)
	}
	unknown := borrower.ActorHandleFor(ids.NewTaskID(), owner.Addr())
	if _, err := getValue(ctx, borrower, call(t, borrower, unknown, "m")); !errors.Is(err, ErrActorDied) {
		t.Fatalf("call on an actor its owner does not know = %v", err)
	}
	if _, err := owner.SubmitActorTask(ctx, &ActorHandle{ID: ids.NewTaskID()}, TaskOptions{NumReturns: 1}, nil); !errors.Is(err, ErrActorDied) {
		t.Fatalf("call on an unknown handle = %v", err)
	}
}
