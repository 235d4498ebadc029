package core

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The owner's pid and node are read from its endpoint, as workers' and
// drivers' sockets are named.
func TestOwnerProcess(t *testing.T) {
	for _, tc := range []struct {
		ep, kind string
		pid      int
		node     string
	}{
		{"/tmp/rayo/s-1/w-42.sock|10.0.0.2:40123|3fa9c2d1", "worker", 42, "3fa9c2d1"},
		{"/tmp/rayo/s-77-ab12/w-9.sock", "worker", 9, ""},
		{"/tmp/rayo/s-4242-ab12cd/driver.sock", "driver", 4242, ""},
		{"/var/rayo/job-310-ffee/driver.sock|127.0.0.1:5|n2", "driver", 310, "n2"},
		{"/tmp/x/w-notanumber.sock", "worker", 0, ""},
		{"/tmp/other.sock|1.2.3.4:5|n3", "process", 0, "n3"},
		{"", "process", 0, ""},
	} {
		kind, pid, node := ownerProcess(tc.ep)
		if kind != tc.kind || pid != tc.pid || node != tc.node {
			t.Errorf("ownerProcess(%q) = %q, %d, %q; want %q, %d, %q", tc.ep, kind, pid, node, tc.kind, tc.pid, tc.node)
		}
	}
}

// deadEndpoint is the endpoint of a worker (pid 4242, on node "far") that
// is gone: nothing listens on its TCP address any more.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return rpc.Endpoint(filepath.Join(shortDir(t), "w-4242.sock"), addr, "far")
}

// An object whose owner died fails with ErrOwnerDied naming the object,
// the task that made it, the owner's pid and node, and saying it died
// (it used to read "rayo: task : rpc: dial tcp:...: connection refused").
func TestOwnerDiedNamesOwner(t *testing.T) {
	borrower := newTestRuntime(t, newFakeRaylet(nil), Config{Node: "near"})
	ctx := testCtx(t)
	ep := deadEndpoint(t)
	id := ids.ForReturn(ids.NewTaskID(), 0)
	h := borrower.HandleFor(id, ep)
	_, err := getValue(ctx, borrower, h)
	var te *TaskError
	if !errors.Is(err, ErrOwnerDied) || !errors.As(err, &te) || te.Kind != KindOwnerDied {
		t.Fatalf("Get with the owner dead = %v, want ErrOwnerDied", err)
	}
	msg := err.Error()
	for _, want := range []string{id.String(), "worker pid 4242", "on node far", "died", "return 1 of task"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "task :") {
		t.Errorf("error %q has an empty task name", msg)
	}
}

// A task whose argument's owner died fails without running, and its error
// names it and the dead owner.
func TestOwnerDiedFailsDependentTask(t *testing.T) {
	w := newFakeWorker(t, nil)
	rt := newTestRuntime(t, newFakeRaylet(w), Config{Node: "near"})
	ctx := testCtx(t)
	arg := rt.HandleFor(ids.ForPut(), deadEndpoint(t))
	next := submit1(t, rt, "consumer", TaskOptions{}, Arg{Ref: arg})
	_, err := getValue(ctx, rt, next)
	var te *TaskError
	if !errors.As(err, &te) || !errors.Is(err, ErrOwnerDied) || te.Task != "consumer" {
		t.Fatalf("Get of a task whose argument's owner died = %v, want ErrOwnerDied naming the task", err)
	}
	for _, want := range []string{"rayo: task consumer:", "made by Put", "worker pid 4242 on node far", "died"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(w.pushed()) != 0 {
		t.Fatal("the task ran although its argument's owner died")
	}
}

// A GetObject whose request or reply is lost while the owner's connection
// stays up is asked again: the borrower gets the value, not ErrOwnerDied
// (the chaos suite drops them with RAYO_TESTING_RPC_FAILURE).
func TestBorrowerAsksAgainWhenAnswerIsLost(t *testing.T) {
	owner := newTestRuntime(t, newFakeRaylet(nil), Config{})
	borrower := newTestRuntime(t, newFakeRaylet(nil), Config{})
	ctx := testCtx(t)
	h, err := owner.Put(ctx, value("kept"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := rpc.ParseFaults("GetObject=0.5:1")
	if err != nil {
		t.Fatal(err)
	}
	req0, resp0 := rpc.InjectedFaults()
	rpc.SetFaults(f)
	t.Cleanup(func() { rpc.SetFaults(nil) })
	b := borrower.HandleFor(h.ID, owner.Addr())
	got := make(chan string, 1)
	go func() {
		v, err := getValue(ctx, borrower, b)
		if err != nil {
			v = err.Error()
		}
		got <- v
	}()
	eventually(t, "a GetObject is lost", func() bool {
		req, resp := rpc.InjectedFaults()
		return req+resp > req0+resp0
	})
	rpc.SetFaults(nil)
	if v := <-got; v != "kept" {
		t.Fatalf("borrower's Get after a lost GetObject = %q, want the value", v)
	}
}

// A lease request this node's raylet did not answer is asked again.
func TestLostLeaseRequestIsAskedAgain(t *testing.T) {
	w := newFakeWorker(t, nil)
	rl := newFakeRaylet(w)
	var calls atomic.Int32
	rl.grant = func(_ *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
		if calls.Add(1) == 1 {
			cb(nil, rpc.ErrInjected)
			return
		}
		cb(&pb.LeaseReply{LeaseId: 1, WorkerAddr: w.addr}, nil)
	}
	rt := newTestRuntime(t, rl, Config{})
	h := submit1(t, rt, "t", TaskOptions{})
	if v, err := getValue(testCtx(t), rt, h); err != nil || v != "t:0" {
		t.Fatalf("Get after a lost lease request = %q, %v", v, err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d lease requests, want 2", n)
	}
}
