// Package worker is the loop of a worker process: the user's executable
// started again by a raylet, which runs the tasks pushed to it one at a
// time and owns whatever those tasks submit.
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// IsWorker reports whether this process was started as a worker.
func IsWorker() bool { return os.Getenv(rayletclient.EnvWorkerID) != "" }

// NodeID is the name of the node this worker runs on, as its raylet set
// it in the environment ("" outside a worker).
func NodeID() string { return os.Getenv(rayletclient.EnvNode) }

// Worker is a running worker process.
type Worker struct {
	id    ids.WorkerID
	rt    *core.Runtime
	arena *objstore.Arena
	pid   int

	mu      sync.Mutex // protects queue, running, cancelled
	cond    *sync.Cond
	queue   []job
	running ids.TaskID
	busy    bool
	replies replyHolder // replies held while more tasks of their connection wait
	out     *output     // labels what each task prints (nil: no labels)
	// cancelled holds cancellations that arrived before their task (the
	// owner may send one while the push is still on its way).
	cancelled map[ids.TaskID]struct{}

	// The actor this worker hosts, if any: set by its creation task, before
	// any method call arrives (calls follow creation on the connection).
	actor any
	sem   chan struct{} // actors with MaxConcurrency > 1: calls at once
	// actorGroup is the placement group its calls' children go to, when
	// the actor was made capturing them (set with actor).
	actorGroup []byte
	addr       string
	raylet     *rpc.Conn // to the raylet, which shows what tasks print (flushOutput)
	node       string    // the node's ID, as events name it
	watch      runWatch  // the tasks that run, to report those that run long
}

// job is a pushed task, and how to answer its owner.
type job struct {
	reply func(*pb.TaskReply, error)
	spec  *pb.TaskSpec
	conn  *rpc.Conn // the connection the task came on
}

// Start connects to the raylet named in the environment, serves tasks, and
// returns the runtime for nested submissions. The process exits when the
// raylet goes away. onReady receives the runtime before any task runs.
func Start(onReady func(*core.Runtime)) (*Worker, error) {
	wid, err := parseWorkerID(os.Getenv(rayletclient.EnvWorkerID))
	if err != nil {
		return nil, err
	}
	out, err := captureOutput(os.Getenv(rayletclient.EnvOutput))
	if err != nil {
		return nil, err
	}
	go out.forward()
	w := &Worker{id: wid, pid: os.Getpid(), out: out, node: os.Getenv(rayletclient.EnvNode)}
	w.cond = sync.NewCond(&w.mu)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := rayletclient.WorkerSocket(os.Getenv(rayletclient.EnvSessionDir), w.pid)
	var ready atomic.Pointer[core.Runtime]
	fromRaylet := rpc.NewMux("worker")
	core.RayletPushes(fromRaylet, ready.Load)
	rpc.Handle(fromRaylet, rpc.DrainWorker, func(context.Context, *pb.Empty) (*pb.StateEvents, error) {
		// The job ended: hand over what was not reported yet; the raylet
		// stops this process next.
		if rt := ready.Load(); rt != nil {
			if b := rt.TakeEvents(); b != nil {
				return b, nil
			}
		}
		return &pb.StateEvents{}, nil
	})
	rc, err := rpc.Dial(ctx, os.Getenv(rayletclient.EnvRaylet), fromRaylet, func(error) {
		// The raylet (and so the driver hosting it) is gone: so are we.
		_ = os.Remove(addr)
		os.Exit(0)
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	arena, err := openStore(os.Getenv(rayletclient.EnvStore))
	if err != nil {
		return nil, err
	}
	if err := loadTLS(); err != nil {
		return nil, err
	}
	rt, err := core.New(core.Config{
		Addr:     addr,
		Raylet:   &rayletclient.Client{Conn: rc},
		Arena:    arena,
		WorkerID: wid,
		IsWorker: true,
		Job:      os.Getenv(rayletclient.EnvJob),
		// Set when the node is one of several:
		ListenTCP:  os.Getenv(rayletclient.EnvListen),
		Token:      os.Getenv(rayletclient.EnvToken),
		JobKey:     os.Getenv(pki.EnvJobKey),
		Node:       os.Getenv(rayletclient.EnvNode),
		NodeAddr:   os.Getenv(rayletclient.EnvNodeAddr),
		DialRaylet: core.RayletDialer(os.Getenv(rayletclient.EnvToken)),
	}, w.mux())
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.rt, w.arena, w.addr, w.raylet = rt, arena, addr, rc
	ready.Store(rt)
	onReady(rt)
	w.replies.wake = make(chan struct{}, 1)
	go w.replies.watch()
	go w.loop()
	reg := &pb.RegisterWorker{WorkerId: wid[:], Pid: int32(w.pid), Addr: rt.Addr()}
	if err := rc.Call(ctx, rpc.MRegisterWorker, reg, &pb.RegisterWorkerReply{}); err != nil {
		return nil, fmt.Errorf("worker: register: %w", err)
	}
	return w, nil
}

// openStore maps the node's object store that the raylet names: fd:N,
// a descriptor it passed, or a path.
func openStore(store string) (*objstore.Arena, error) {
	var arena *objstore.Arena
	var err error
	if strings.HasPrefix(store, "fd:") {
		fd, perr := strconv.Atoi(store[3:])
		if perr != nil {
			return nil, fmt.Errorf("worker: bad %s %q", rayletclient.EnvStore, store)
		}
		arena, err = objstore.OpenArenaFd(fd, store)
	} else {
		arena, err = objstore.OpenArena(store)
	}
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return arena, nil
}

// loadTLS sets up the node's certificate, for the links to other nodes,
// when the worker serves them.
func loadTLS() error {
	dir := os.Getenv(pki.EnvDir)
	if dir == "" || os.Getenv(rayletclient.EnvListen) == "" {
		return nil
	}
	creds, err := pki.LoadDir(dir, "")
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	rpc.SetDefaultTLS(rpc.NewTLS(creds))
	return nil
}

func parseWorkerID(s string) (ids.WorkerID, error) {
	var w ids.WorkerID
	if len(s) != 2*len(w) {
		return w, fmt.Errorf("worker: bad %s %q", rayletclient.EnvWorkerID, s)
	}
	for i := range w {
		var b byte
		if _, err := fmt.Sscanf(s[2*i:2*i+2], "%02x", &b); err != nil {
			return w, fmt.Errorf("worker: bad %s %q", rayletclient.EnvWorkerID, s)
		}
		w[i] = b
	}
	return w, nil
}

// mux is what a worker serves its owners, besides the runtime's own.
func (w *Worker) mux() *rpc.Mux {
	mx := rpc.NewMux("worker")
	rpc.HandleAsync(mx, rpc.PushTask, w.servePush)
	rpc.HandleNotify(mx, rpc.CancelTask, w.serveCancel)
	rpc.HandleNotify(mx, rpc.KillActor, func(ctx context.Context, _ *pb.ActorAddrRequest) {
		if job := rpc.JobOf(ctx); job != "" && job != os.Getenv(rayletclient.EnvJob) {
			// Another job's credential may call this job's named actors,
			// not kill them (their owner does, see serveKillOwnedActor).
			return
		}
		_ = os.Remove(w.addr)
		os.Exit(0)
	})
	return mx
}

// servePush queues a task; the loop replies once it ran.
func (w *Worker) servePush(ctx context.Context, spec *pb.TaskSpec, reply func(*pb.TaskReply, error)) {
	w.mu.Lock()
	if tid, err := ids.TaskIDFrom(spec.TaskId); err == nil {
		if _, ok := w.cancelled[tid]; ok {
			delete(w.cancelled, tid)
			w.mu.Unlock()
			reply(cancelledReply(spec), nil)
			return
		}
	}
	w.queue = append(w.queue, job{reply, spec, rpc.ConnOf(ctx)})
	w.cond.Signal()
	w.mu.Unlock()
}

func cancelledReply(spec *pb.TaskSpec) *pb.TaskReply {
	return &pb.TaskReply{TaskId: spec.TaskId, Error: &pb.TaskError{
		Kind: core.KindCancelled, Message: core.ErrTaskCancelled.Error(), TaskName: spec.Name}}
}

// serveCancel drops a queued task, or ends the process if the task is
// running: Go cannot interrupt a running function.
func (w *Worker) serveCancel(_ context.Context, msg *pb.ObjectIDs) {
	if len(msg.Ids) == 0 {
		return
	}
	tid, err := ids.TaskIDFrom(msg.Ids[0])
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy && w.running == tid {
		os.Exit(3)
	}
	for i, j := range w.queue {
		if string(j.spec.TaskId) == string(tid[:]) {
			w.queue = append(w.queue[:i], w.queue[i+1:]...)
			j.reply(cancelledReply(j.spec), nil)
			return
		}
	}
	if w.cancelled == nil || len(w.cancelled) > 1024 {
		w.cancelled = make(map[ids.TaskID]struct{})
	}
	w.cancelled[tid] = struct{}{}
}

func (w *Worker) loop() {
	// Arguments in the object store are mapped read-only: a task that
	// writes to one gets a panic (and an error back), not a dead worker.
	debug.SetPanicOnFault(true)
	for {
		w.mu.Lock()
		for len(w.queue) == 0 {
			w.busy = false
			w.cond.Wait()
		}
		j := w.queue[0]
		w.queue[0] = job{}
		w.queue = w.queue[1:]
		w.running, _ = ids.TaskIDFrom(j.spec.TaskId)
		w.busy = true
		sem := w.sem
		w.mu.Unlock()
		if sem != nil && len(j.spec.ActorId) > 0 && !j.spec.ActorCreate {
			// A concurrent actor: up to cap(sem) calls at once, unordered.
			sem <- struct{}{}
			go func() {
				debug.SetPanicOnFault(true)
				j.reply(w.execute(j.spec), nil)
				<-sem
			}()
			continue
		}
		reply := w.execute(j.spec)
		// What it printed goes on before the next task's mark, and is
		// shown before its owner has the result.
		if w.out.endTask() {
			w.flushOutput()
		}
		w.mu.Lock()
		more := len(w.queue) > 0 && w.queue[0].conn == j.conn
		w.mu.Unlock()
		w.replies.send(j.conn, more, func() { j.reply(reply, nil) })
	}
}

// flushOutput waits until what the worker printed so far has been shown
// by its driver (the raylet's FlushOutput, bounded there). Without it the
// driver could go on after a Get, and print, before the task's own lines
// reached it: they travel through the raylet, the reply straight.
func (w *Worker) flushOutput() {
	if w.raylet == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.raylet.Call(ctx, rpc.MFlushOutput, &pb.Empty{}, &pb.Empty{}) // an old or gone raylet: the lines come when they come
}

// label names the task as the one whose output comes next.
func (w *Worker) label(spec *pb.TaskSpec, concurrent bool) {
	if concurrent {
		// Calls print among each other's: their lines are found by time,
		// and labelled by method.
		w.out.startTask(spec.Name, 0, false)
		return
	}
	// A concurrent actor's creation is marked at once: its calls give no
	// keys, so the raylet cannot tell from them that it was silent.
	w.out.startTask(spec.Name, rayletclient.TaskLogKey(spec.TaskId, spec.Attempt), spec.ActorCreate && spec.MaxConcurrency > 1)
}

// run runs one task and encodes its outcome.
func (w *Worker) run(spec *pb.TaskSpec) *pb.TaskReply {
	reply := &pb.TaskReply{TaskId: spec.TaskId}
	fail := func(kind, msg, stack string) *pb.TaskReply {
		reply.Returns = nil
		reply.Error = &pb.TaskError{Kind: kind, Message: msg, Stack: stack, TaskName: spec.Name, Pid: int32(w.pid)}
		return reply
	}
	fn := core.Lookup(spec.Function)
	if fn == nil {
		return fail(core.KindUnknownFunction, fmt.Sprintf("function %q is not registered in this executable: declare remote functions at package level, before rayo.Init", spec.Function), "")
	}
	w.mu.Lock()
	actor, concurrent := w.actor, w.sem != nil
	w.mu.Unlock()
	w.label(spec, concurrent)
	args, release, kind, msg := w.taskArgs(spec)
	defer release() // store arguments stay in place while the task runs
	if kind != "" {
		return fail(kind, msg, "")
	}
	start := time.Now()
	// Views of the arguments (rayo.View parameters) end with the call.
	tctx, scope := core.WithTaskScope(context.Background())
	defer scope.End()
	var call func() ([]core.Result, error)
	switch {
	case spec.ActorCreate && fn.Ctor != nil:
		call = func() ([]core.Result, error) {
			state, err := fn.Ctor(tctx, args)
			if err == nil {
				w.mu.Lock()
				w.actor = state
				if spec.MaxConcurrency > 1 {
					w.sem = make(chan struct{}, spec.MaxConcurrency)
					w.out.setConcurrent()
				}
				w.mu.Unlock()
			}
			return nil, err
		}
	case len(spec.ActorId) > 0 && !spec.ActorCreate && fn.Method != nil:
		if actor == nil {
			return fail(core.KindActorDied, "this worker hosts no actor", "")
		}
		call = func() ([]core.Result, error) { return fn.Method(tctx, actor, args) }
	case len(spec.ActorId) == 0 && fn.Invoke != nil:
		call = func() ([]core.Result, error) { return fn.Invoke(tctx, args) }
	default:
		return fail(core.KindType, fmt.Sprintf("%q is not a %s", spec.Function, kindOf(spec)), "")
	}
	results, panicked, stack, err := invoke(call)
	scope.End()
	if f, ok := err.(interface{ Addr() uintptr }); ok && panicked && w.arena.InView(f.Addr()) {
		err = fmt.Errorf("write to an immutable object (values from the object store are read-only; copy before changing): %w", err)
	}
	reply.ExecNs = int64(time.Since(start))
	switch {
	case panicked:
		return fail(core.KindPanic, fmt.Sprint(err), stack)
	case err != nil && errors.Is(err, core.ErrTypeMismatch):
		return fail(core.KindType, err.Error(), "")
	case err != nil && errors.Is(err, codec.ErrUnserializable):
		return fail(core.KindUnserializable, err.Error(), "")
	case err != nil:
		// A returned error has no stack of its own (the worker's would
		// show only rayo's frames): say which function returned it.
		return fail(core.KindApp, err.Error(), fmt.Sprintf("returned by %s (%s)", spec.Name, fn.Source))
	}
	if kind, msg := w.storeResults(reply, spec, results); kind != "" {
		return fail(kind, msg, "")
	}
	return reply
}

// storeResults stores a task's results and adds where they are to reply;
// when one cannot be stored, kind and msg say why.
func (w *Worker) storeResults(reply *pb.TaskReply, spec *pb.TaskSpec, results []core.Result) (kind, msg string) {
	ctx := context.Background()
	tid, _ := ids.TaskIDFrom(spec.TaskId)
	for i, r := range results {
		r.Owner = spec.OwnerAddr
		loc, err := w.rt.StoreResult(ctx, ids.ForReturn(tid, i), r)
		if err != nil {
			kind := core.KindSystem
			if errors.Is(err, core.ErrStoreFull) {
				kind = core.KindStoreFull
			}
			return kind, fmt.Sprintf("storing result %d: %v", i, err)
		}
		reply.Returns = append(reply.Returns, loc)
	}
	return "", ""
}

// taskArgs resolves a task's arguments: their bytes, inline or in the
// store, where they stay until release. When one cannot be had, kind and
// msg say why (release still must run).
func (w *Worker) taskArgs(spec *pb.TaskSpec) (args [][]byte, release func(), kind, msg string) {
	args = make([][]byte, len(spec.Args))
	var releases []func()
	release = func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	for i, a := range spec.Args {
		if a.Value == nil {
			return nil, release, core.KindSystem, fmt.Sprintf("argument %d was not resolved", i)
		}
		var oid ids.ObjectID
		var owner string
		if a.Ref != nil {
			oid, _ = ids.ObjectIDFrom(a.Ref.Id)
			owner = a.Ref.OwnerAddr
		}
		b, rel, err := w.rt.Bytes(context.Background(), oid, owner, a.Value)
		if err != nil {
			kind := core.KindSystem
			if errors.Is(err, core.ErrStoreFull) {
				kind = core.KindStoreFull // e.g. pulled into a smaller store
			}
			return nil, release, kind, fmt.Sprintf("argument %d: %v", i, err)
		}
		releases = append(releases, rel)
		args[i] = b
	}
	return args, release, "", ""
}

func kindOf(spec *pb.TaskSpec) string {
	switch {
	case spec.ActorCreate:
		return "actor constructor"
	case len(spec.ActorId) > 0:
		return "actor method"
	}
	return "remote function"
}

func invoke(call func() ([]core.Result, error)) (results []core.Result, panicked bool, stack string, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked, stack, err = true, string(debug.Stack()), fmt.Errorf("%v", p)
			if e, ok := p.(error); ok {
				err = e
			}
		}
	}()
	results, err = call()
	return results, false, "", err
}
