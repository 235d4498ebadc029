package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// nullRaylet is a RayletClient that is never needed: the tests below pass
// values inline only.
type nullRaylet struct{}

func (nullRaylet) RequestLease(_ *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
	cb(nil, errors.New("no raylet"))
}
func (nullRaylet) ReturnLease(*pb.ReturnLease)   {}
func (nullRaylet) SetBlocked(ids.WorkerID, bool) {}
func (nullRaylet) SealObjects([]ids.ObjectID)    {}
func (nullRaylet) FreeObjects([]ids.ObjectID)    {}
func (nullRaylet) UnpinObjects([]ids.ObjectID)   {}
func (nullRaylet) ActorAlive([]byte, string)     {}
func (nullRaylet) RegisterActorName(context.Context, *pb.ActorName) error {
	return errors.New("no raylet")
}
func (nullRaylet) CreateObject(context.Context, ids.ObjectID, int64, string) (int64, error) {
	return 0, errors.New("no raylet")
}
func (nullRaylet) PinObject(context.Context, ids.ObjectID) (int64, error) {
	return 0, errors.New("no raylet")
}
func (nullRaylet) LookupActorName(context.Context, string, string) (*pb.ActorName, error) {
	return nil, errors.New("no raylet")
}
func (nullRaylet) PullObject(context.Context, ids.ObjectID, string, int64) (int64, error) {
	return 0, errors.New("no raylet")
}
func (nullRaylet) PlacementGroup(context.Context, *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	return nil, errors.New("no raylet")
}

// testWorker is a Worker without a process: its runtime serves on a Unix
// socket of the test, against nullRaylet.
func testWorker(t *testing.T) *Worker { return testWorkerOf(t, nullRaylet{}) }

// eventsRaylet is a nullRaylet that passes on the batches of events it is
// sent.
type eventsRaylet struct {
	nullRaylet
	batches chan *pb.StateEvents
}

func (r eventsRaylet) ReportEvents(b *pb.StateEvents) { r.batches <- b }

// testWorkerOf is testWorker against raylet.
func testWorkerOf(t *testing.T, raylet core.RayletClient) *Worker {
	t.Helper()
	dir, err := os.MkdirTemp("", "wk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	rt, err := core.New(core.Config{Addr: filepath.Join(dir, "w.sock"), Raylet: raylet, IsWorker: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	w := &Worker{id: ids.NewWorkerID(), rt: rt, pid: os.Getpid()}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func register(t *testing.T, f *core.Function) string {
	t.Helper()
	f, _ = core.RegisterFunction("worker_test."+t.Name(), f)
	return f.Name
}

func inline(s string) *pb.TaskArg { return &pb.TaskArg{Value: &pb.Locator{Inline: []byte(s)}} }

func spec(fn string, args ...*pb.TaskArg) *pb.TaskSpec {
	tid := ids.NewTaskID()
	return &pb.TaskSpec{TaskId: tid[:], Function: fn, Name: fn, NumReturns: 1, Args: args}
}

var concat = func(_ context.Context, args [][]byte) ([]core.Result, error) {
	var b strings.Builder
	for _, a := range args {
		b.Write(a)
	}
	return []core.Result{{Value: codec.Payload{Body: []byte(b.String())}}}, nil
}

func TestRunFunction(t *testing.T) {
	w := testWorker(t)
	name := register(t, &core.Function{Invoke: concat, NumReturns: 1})
	r := w.execute(spec(name, inline("a"), inline("b")))
	if r.Error != nil || len(r.Returns) != 1 || string(r.Returns[0].Inline) != "ab" {
		t.Fatalf("reply %v", r)
	}
	if r.Pid != int32(os.Getpid()) || r.StartUnixNs == 0 || string(r.WorkerId) != string(w.id[:]) {
		t.Fatalf("reply does not say where and when it ran: %v", r)
	}
}

// Each way a task can fail in the worker gets its kind.
func TestRunFailures(t *testing.T) {
	w := testWorker(t)
	boom := register(t, &core.Function{Invoke: func(context.Context, [][]byte) ([]core.Result, error) {
		return nil, errors.New("boom")
	}, Source: "x.go:1"})
	panics := register(t, &core.Function{Invoke: func(context.Context, [][]byte) ([]core.Result, error) {
		panic("oh no")
	}})
	mismatch := register(t, &core.Function{Invoke: func(context.Context, [][]byte) ([]core.Result, error) {
		return nil, fmt.Errorf("arg 0: %w", core.ErrTypeMismatch)
	}})
	unser := register(t, &core.Function{Invoke: func(context.Context, [][]byte) ([]core.Result, error) {
		return nil, fmt.Errorf("result: %w", codec.ErrUnserializable)
	}})
	method := register(t, &core.Function{Method: func(context.Context, any, [][]byte) ([]core.Result, error) { return nil, nil }})
	unresolved := spec(boom, &pb.TaskArg{})
	asActor := spec(method)
	asActor.ActorId = asActor.TaskId
	cases := []struct {
		name string
		spec *pb.TaskSpec
		kind string
		text string
	}{
		{"returned error", spec(boom), core.KindApp, "boom"},
		{"panic", spec(panics), core.KindPanic, "oh no"},
		{"type mismatch", spec(mismatch), core.KindType, "type mismatch"},
		{"unserializable", spec(unser), core.KindUnserializable, "result"},
		{"unknown function", spec("no such function"), core.KindUnknownFunction, "not registered"},
		{"method as a function", spec(method), core.KindType, "is not a remote function"},
		{"unresolved argument", unresolved, core.KindSystem, "argument 0 was not resolved"},
		{"method without an actor", asActor, core.KindActorDied, "hosts no actor"},
	}
	for _, c := range cases {
		r := w.execute(c.spec)
		if r.Error == nil || r.Error.Kind != c.kind || !strings.Contains(r.Error.Message, c.text) {
			t.Errorf("%s: reply error %v, want kind %s with %q", c.name, r.Error, c.kind, c.text)
			continue
		}
		if r.Error.TaskName != c.spec.Name || len(r.Returns) != 0 {
			t.Errorf("%s: reply %v", c.name, r)
		}
	}
	if r := w.execute(spec(panics)); !strings.Contains(r.Error.Stack, "goroutine") {
		t.Errorf("a panic's reply has no stack: %q", r.Error.Stack)
	}
	if r := w.execute(spec(boom)); !strings.Contains(r.Error.Stack, "x.go:1") {
		t.Errorf("a returned error does not say where it came from: %q", r.Error.Stack)
	}
}

// An actor's constructor keeps its state for the methods that follow.
func TestRunActor(t *testing.T) {
	w := testWorker(t)
	ctor := register(t, &core.Function{Ctor: func(_ context.Context, args [][]byte) (any, error) {
		s := string(args[0])
		return &s, nil
	}})
	get := register(t, &core.Function{Method: func(_ context.Context, state any, args [][]byte) ([]core.Result, error) {
		return []core.Result{{Value: codec.Payload{Body: []byte(*state.(*string) + string(args[0]))}}}, nil
	}})
	create := spec(ctor, inline("hello "))
	create.ActorId, create.ActorCreate, create.MaxConcurrency = create.TaskId, true, 4
	if r := w.execute(create); r.Error != nil {
		t.Fatal(r.Error)
	}
	if cap(w.sem) != 4 {
		t.Fatalf("MaxConcurrency 4 gave a semaphore of %d", cap(w.sem))
	}
	m := spec(get, inline("world"))
	m.ActorId = create.ActorId
	r := w.execute(m)
	if r.Error != nil || string(r.Returns[0].Inline) != "hello world" {
		t.Fatalf("method reply %v", r)
	}
	// A constructor as a plain function is refused.
	if r := w.execute(spec(ctor, inline("x"))); r.Error == nil || r.Error.Kind != core.KindType {
		t.Fatalf("constructor as a function: %v", r.Error)
	}
}

// A cancel that arrives before its task answers the task as cancelled when
// it comes; one for a queued task takes it out of the queue.
func TestCancelBeforeRun(t *testing.T) {
	w := testWorker(t)
	// No loop runs: the queue only fills.
	a, b := net.Pipe()
	replies := make(chan *pb.TaskReply, 4)
	owner := rpc.NewConn(a, rpc.HandlerFunc(func(*rpc.Conn, rpc.Method, rpc.Kind, uint64, []byte) {}))
	defer owner.Close()
	srv := rpc.NewConn(b, w.mux()) // the worker's own dispatch
	defer srv.Close()
	push := func(s *pb.TaskSpec) {
		owner.Go(rpc.MPushTask, s, func(body []byte, err error) {
			r := &pb.TaskReply{}
			if err == nil {
				err = proto.Unmarshal(body, r)
			}
			if err != nil {
				r.Error = &pb.TaskError{Message: err.Error()}
			}
			replies <- r
		})
	}
	early := spec("f")
	if err := owner.Notify(rpc.MCancelTask, &pb.ObjectIDs{Ids: [][]byte{early.TaskId}}); err != nil {
		t.Fatal(err)
	}
	push(early)
	if r := <-replies; r.Error == nil || r.Error.Kind != core.KindCancelled || string(r.TaskId) != string(early.TaskId) {
		t.Fatalf("early-cancelled task: %v", r)
	}
	queued := spec("g")
	push(queued)
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := len(w.queue)
		w.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task was never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if err := owner.Notify(rpc.MCancelTask, &pb.ObjectIDs{Ids: [][]byte{queued.TaskId}}); err != nil {
		t.Fatal(err)
	}
	if r := <-replies; r.Error == nil || r.Error.Kind != core.KindCancelled {
		t.Fatalf("queued cancelled task: %v", r)
	}
	// A cancel without a task, or of one unknown, is kept or dropped quietly.
	if err := owner.Notify(rpc.MCancelTask, &pb.Empty{}); err != nil {
		t.Fatal(err)
	}
}

func TestParseWorkerID(t *testing.T) {
	id := ids.NewWorkerID()
	got, err := parseWorkerID(id.String())
	if err != nil || got != id {
		t.Fatalf("parseWorkerID(%s) = %v, %v", id, got, err)
	}
	for _, bad := range []string{"", "abc", id.String()[:30], id.String() + "00", strings.Repeat("zz", 16)} {
		if _, err := parseWorkerID(bad); err == nil || !strings.Contains(err.Error(), "bad") {
			t.Errorf("parseWorkerID(%q) = %v, want an error", bad, err)
		}
	}
}

func TestKindOf(t *testing.T) {
	s := &pb.TaskSpec{}
	if kindOf(s) != "remote function" {
		t.Error(kindOf(s))
	}
	s.ActorId = []byte{1}
	if kindOf(s) != "actor method" {
		t.Error(kindOf(s))
	}
	s.ActorCreate = true
	if kindOf(s) != "actor constructor" {
		t.Error(kindOf(s))
	}
}

func TestInvoke(t *testing.T) {
	sentinel := errors.New("sentinel")
	_, panicked, stack, err := invoke(func() ([]core.Result, error) { panic(sentinel) })
	if !panicked || !errors.Is(err, sentinel) || stack == "" {
		t.Fatalf("panic with an error: %v %v %q", panicked, err, stack)
	}
	_, panicked, _, err = invoke(func() ([]core.Result, error) { panic(42) })
	if !panicked || err.Error() != "42" {
		t.Fatalf("panic with a value: %v %v", panicked, err)
	}
	res, panicked, _, err := invoke(func() ([]core.Result, error) { return []core.Result{{}}, sentinel })
	if panicked || err != sentinel || len(res) != 1 {
		t.Fatalf("plain return: %v %v %v", res, panicked, err)
	}
}

// A task's GPUs become CUDA_VISIBLE_DEVICES and GPUIDs; a task without
// any puts back what the process had.
func TestSetGPUs(t *testing.T) {
	t.Setenv(EnvCUDAVisibleDevices, "orig")
	// Start as a fresh process would: tasks run by other tests set it.
	gpus.Lock()
	gpus.ids, gpus.set = nil, false
	gpus.Unlock()
	setGPUs([]int32{2, 0})
	if got := os.Getenv(EnvCUDAVisibleDevices); got != "2,0" {
		t.Fatalf("CUDA_VISIBLE_DEVICES = %q", got)
	}
	if g := GPUIDs(); len(g) != 2 || g[0] != 2 || g[1] != 0 {
		t.Fatalf("GPUIDs = %v", g)
	}
	setGPUs(nil)
	if got := os.Getenv(EnvCUDAVisibleDevices); got != "orig" {
		t.Fatalf("CUDA_VISIBLE_DEVICES after = %q, want the process's own back", got)
	}
	if GPUIDs() != nil {
		t.Fatal("GPUIDs without GPUs")
	}
}

// A worker knows its node and that it is one from the environment its
// raylet starts it with.
func TestNodeIDAndIsWorkerFromTheEnvironment(t *testing.T) {
	t.Setenv(rayletclient.EnvNode, "")
	t.Setenv(rayletclient.EnvWorkerID, "")
	if NodeID() != "" || IsWorker() {
		t.Fatalf("outside a worker: NodeID %q, IsWorker %v", NodeID(), IsWorker())
	}
	t.Setenv(rayletclient.EnvNode, "n1")
	t.Setenv(rayletclient.EnvWorkerID, "00")
	if NodeID() != "n1" || !IsWorker() {
		t.Fatalf("in a worker: NodeID %q, IsWorker %v", NodeID(), IsWorker())
	}
}

// nextEvents waits (10 s at most) for the next batch of task events
// that a worker made itself, by task ID.
func nextEvents(t *testing.T, r eventsRaylet) map[string]*pb.TaskEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b := <-r.batches:
			if len(b.Tasks) == 0 {
				continue
			}
			out := map[string]*pb.TaskEvent{}
			for _, e := range b.Tasks {
				out[string(e.TaskId)] = e
			}
			return out
		case <-timeout:
			t.Fatal("no task events in 10 s")
		}
	}
}

// A task that runs past runningAfter is reported RUNNING by its worker
// while it runs, and its end after; two at once are both reported; a short
// task is left to its owner (its reply says where and when it ran).
func TestLongTasksAreReportedRunning(t *testing.T) {
	raylet := eventsRaylet{batches: make(chan *pb.StateEvents, 16)}
	w := testWorkerOf(t, raylet)
	release := make(chan struct{})
	long := register(t, &core.Function{Invoke: func(context.Context, [][]byte) ([]core.Result, error) {
		<-release
		return []core.Result{{Value: codec.Payload{Body: []byte("x")}}}, nil
	}, NumReturns: 1})
	short := register(t, &core.Function{Invoke: concat, NumReturns: 1})

	// A short task first, which arms the watch and ends before it fires.
	s := spec(short, inline("s"))
	if r := w.execute(s); r.Error != nil {
		t.Fatal(r.Error)
	}
	a, b := spec(long), spec(long)
	done := make(chan *pb.TaskReply, 2)
	for _, sp := range []*pb.TaskSpec{a, b} {
		go func() { done <- w.execute(sp) }()
	}
	seen := map[string]*pb.TaskEvent{}
	for seen[string(a.TaskId)] == nil || seen[string(b.TaskId)] == nil {
		for id, e := range nextEvents(t, raylet) {
			seen[id] = e
		}
	}
	if e := seen[string(s.TaskId)]; e != nil {
		t.Fatalf("a short task was reported by its worker: %v", e)
	}
	for _, sp := range []*pb.TaskSpec{a, b} {
		e := seen[string(sp.TaskId)]
		if e.State != "RUNNING" || e.WorkerPid != int32(os.Getpid()) || string(e.WorkerId) != string(w.id[:]) {
			t.Fatalf("event %v, want RUNNING on this worker", e)
		}
	}
	close(release)
	<-done
	<-done
	ends := map[string]*pb.TaskEvent{}
	for ends[string(a.TaskId)] == nil || ends[string(b.TaskId)] == nil {
		for id, e := range nextEvents(t, raylet) {
			ends[id] = e
		}
	}
	for _, sp := range []*pb.TaskSpec{a, b} {
		if e := ends[string(sp.TaskId)]; e.State != "FINISHED" {
			t.Fatalf("end of a task reported RUNNING: %v, want FINISHED", e)
		}
	}
	w.watch.mu.Lock()
	defer w.watch.mu.Unlock()
	if len(w.watch.calls) != 0 || w.watch.armed {
		t.Fatalf("watch still holds %d calls (armed %v) with none running", len(w.watch.calls), w.watch.armed)
	}
}
