package core

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// actorSubmitter holds the actors this process created or holds handles
// to, and their queues of calls.
type actorSubmitter struct {
	rt *Runtime // the runtime it belongs to: its other tables, peers and raylet

	mu   sync.Mutex // protects byID and the fields of every actorRec (but sendMu's)
	byID map[ids.TaskID]*actorRec
}

type actorState uint8

const (
	actorPending actorState = iota // being created, or its address not known yet
	actorAlive
	actorDead
)

// actorRec is this process's record of an actor: the one it created (it
// owns it: it holds the worker's lease and answers where the actor runs),
// or one it holds a handle to.
type actorRec struct {
	id     ids.TaskID // the creation task's ID
	owner  string
	owned  bool
	name   string // the class, for errors
	state  actorState
	addr   string    // the actor's worker, once alive
	conn   *rpc.Conn // to the actor's worker
	died   *pb.TaskError
	create *task  // owned: the creation task
	lease  *lease // owned: the dedicated worker
	queue  []*task
	// inflight counts calls pushed and not answered.
	inflight       map[*task]struct{}
	fetching       bool     // borrowed: address asked of the owner
	wake           []func() // run once the actor is alive or dead
	handles        int32    // live handles in this process
	exported       bool     // a handle left this process: never stopped for lack of handles
	named          bool     // named actors live as long as their owner
	detached       bool     // outlives its creator; reached through the control store
	direct         string   // borrowed detached actor: its worker, from the control store
	resources      []*pb.Resource
	place          Placement
	maxConcurrency int
	class          string // for the state API: the class, its registered name and namespace
	regName        string
	namespace      string
	// desc describes the actor to the control store, in its registration
	// (when named) and in its lease request, so that the raylet hosting it
	// can report it to a restarted control store. Never changed once made.
	desc *pb.ActorName

	// Restarts (owned actors).
	createSpec   *pb.TaskSpec    // to run the constructor again
	pins         []*pb.ObjectRef // the constructor's arguments, kept for restarts
	restartsLeft int             // -1: unlimited
	taskRetries  int             // per call, after the actor's process dies
	restarts     int             // how many times it was restarted
	ranOn        *pb.TaskReply   // where the constructor last ran (node, pid, worker), for the state API
	noRestart    bool            // killed on purpose: stay dead
	nextSeq      uint64          // submission order of calls
	// outbox holds calls dispatched and not yet written to conn. Calls are
	// written by flushActor under sendMu, in dispatch order, whichever
	// goroutine gets there.
	outbox   []*task
	sendMu   sync.Mutex
	deadAddr string // borrowed: the address that stopped answering
}

// ActorOptions are how an actor is created.
type ActorOptions struct {
	Class          string // registry name of the constructor
	Name           string // shown in errors and logs
	StateType      string // Go type of the actor's state, checked by GetActor
	RegisterName   string // the actor's name in the control store, if any
	Namespace      string
	Resources      map[string]float64 // held for the actor's life; none by default
	MaxConcurrency int
	Detached       bool // outlives the job that made it (needs RegisterName)
	MaxRestarts    int  // times the actor is restarted after its process dies (-1: always)
	MaxTaskRetries int  // times a call in flight when the process died is retried
	Placement      Placement
}

// ActorHandle is one reference to an actor held by user code.
type ActorHandle struct {
	ID       ids.TaskID
	Owner    string
	rt       *Runtime
	released atomic.Bool
	cleanup  runtime.Cleanup
}

type actorRelease struct {
	id ids.TaskID
	rt *Runtime
}

// newActorHandleLocked makes a handle that counts as a reference to a.
// The caller holds actors.mu.
func (as *actorSubmitter) newActorHandleLocked(a *actorRec) *ActorHandle {
	a.handles++
	h := &ActorHandle{ID: a.id, Owner: a.owner, rt: as.rt}
	h.cleanup = runtime.AddCleanup(h, releaseActorHandle, actorRelease{a.id, as.rt})
	return h
}

func releaseActorHandle(r actorRelease) { r.rt.actors.releaseActor(r.id) }

// Runtime is the runtime the handle belongs to.
func (h *ActorHandle) Runtime() *Runtime { return h.rt }

// Release drops this handle now rather than when the garbage collector
// finds it.
func (h *ActorHandle) Release() {
	if h == nil || !h.released.CompareAndSwap(false, true) {
		return
	}
	h.cleanup.Stop()
	h.rt.actors.releaseActor(h.ID)
}

// Exported marks that a handle left this process (inside a value): the
// actor is then not stopped when this process's handles are gone.
func (h *ActorHandle) Exported() {
	h.rt.actors.mu.Lock()
	if a := h.rt.actors.byID[h.ID]; a != nil {
		a.exported = true
	}
	h.rt.actors.mu.Unlock()
}

func (as *actorSubmitter) releaseActor(id ids.TaskID) {
	var after actions
	as.rt.lockAll()
	if a := as.byID[id]; a != nil {
		a.handles--
		// Nobody can call it any more: it stops now if idle, otherwise
		// when its last call finishes (see pushActor).
		as.stopIfUnusedLocked(a, &after)
	}
	as.rt.unlockAll()
	after.run(as.rt)
}

// stopIfUnusedLocked stops an owned, running actor that no handle can
// reach and that has no call left (re-checked as calls finish, and when
// creation completes). The caller holds lockAll's locks, as for every
// ...Locked function of this file.
func (as *actorSubmitter) stopIfUnusedLocked(a *actorRec, after *actions) {
	if a.owned && a.state == actorAlive && a.handles <= 0 && !a.exported && !a.named && len(a.queue) == 0 && len(a.inflight) == 0 {
		as.actorDiedLocked(a, tasktable.CauseOutOfScope, &pb.TaskError{Kind: KindActorDied, Message: "actor stopped: no handle to it remains"}, after)
	}
}

// CreateActor starts an actor: a dedicated worker process runs the
// constructor and keeps its value for the actor's methods.
func (rt *Runtime) CreateActor(ctx context.Context, opts ActorOptions, args []Arg) (*ActorHandle, error) {
	return rt.actors.create(ctx, opts, args)
}

// create does the work of Runtime.CreateActor.
func (as *actorSubmitter) create(ctx context.Context, opts ActorOptions, args []Arg) (*ActorHandle, error) {
	a := &actorRec{
		id:             ids.NewTaskID(),
		owner:          as.rt.addr,
		owned:          true,
		name:           opts.Name,
		inflight:       make(map[*task]struct{}),
		maxConcurrency: opts.MaxConcurrency,
		named:          opts.RegisterName != "",
		detached:       opts.Detached,
		restartsLeft:   opts.MaxRestarts,
		taskRetries:    opts.MaxTaskRetries,
		class:          opts.Name,
		regName:        opts.RegisterName,
		namespace:      opts.Namespace,
	}
	if opts.Detached && opts.RegisterName == "" {
		return nil, fmt.Errorf("rayo: create actor %s: a detached actor needs a name (rayo.Name) to be found again", opts.Name)
	}
	a.desc = &pb.ActorName{
		Name: opts.RegisterName, Namespace: opts.Namespace, ActorId: a.id[:], OwnerAddr: as.rt.addr, Class: opts.StateType,
		Detached: opts.Detached, JobId: as.rt.cfg.Job, ClassName: opts.Name, MaxRestarts: int32(opts.MaxRestarts),
	}
	if opts.RegisterName != "" {
		// The control store learns here, before the actor runs, what it is
		// (detached, named, of which job): its owner's batched events may
		// never come if the owner dies at once.
		err := as.rt.cfg.Raylet.RegisterActorName(ctx, a.desc)
		if err != nil {
			return nil, fmt.Errorf("rayo: create actor %s: %w", opts.Name, err)
		}
	}
	// The caller's handle counts from the start, so that a creation that
	// finishes at once does not find the actor unreferenced.
	a.handles = 1
	topts := TaskOptions{Function: opts.Class, Name: opts.Name, Resources: opts.Resources, Placement: opts.Placement}
	if _, err := as.rt.tasks.submit(ctx, topts, args, nil, a); err != nil {
		return nil, err
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	a.handles-- // newActorHandleLocked counts it again
	return as.newActorHandleLocked(a), nil
}

// ActorHandleFor makes a handle for an actor that arrived inside a value
// or was found by name.
func (rt *Runtime) ActorHandleFor(id ids.TaskID, owner string) *ActorHandle {
	return rt.actors.handleFor(id, owner)
}

// handleFor does the work of Runtime.ActorHandleFor.
func (as *actorSubmitter) handleFor(id ids.TaskID, owner string) *ActorHandle {
	as.mu.Lock()
	defer as.mu.Unlock()
	a := as.byID[id]
	if a == nil {
		a = &actorRec{id: id, owner: owner, inflight: make(map[*task]struct{})}
		if owner == as.rt.addr {
			// Ours, but gone already.
			a.owned, a.state = true, actorDead
			a.died = &pb.TaskError{Kind: KindActorDied, Message: "actor is gone"}
		}
		as.byID[id] = a
	}
	return as.newActorHandleLocked(a)
}

// DetachedActorHandle makes a handle for a detached actor found by name:
// it is reached at its worker's address, whoever made it.
func (rt *Runtime) DetachedActorHandle(id ids.TaskID, owner, workerAddr string) *ActorHandle {
	return rt.actors.detachedHandle(id, owner, workerAddr)
}

// detachedHandle does the work of Runtime.DetachedActorHandle.
func (as *actorSubmitter) detachedHandle(id ids.TaskID, owner, workerAddr string) *ActorHandle {
	as.mu.Lock()
	defer as.mu.Unlock()
	a := as.byID[id]
	if a == nil {
		a = &actorRec{id: id, owner: owner, inflight: make(map[*task]struct{}), direct: workerAddr}
		as.byID[id] = a
	}
	return as.newActorHandleLocked(a)
}

// LookupActor finds a named actor in the control store.
func (rt *Runtime) LookupActor(ctx context.Context, namespace, name string) (*pb.ActorName, error) {
	return rt.cfg.Raylet.LookupActorName(ctx, namespace, name)
}

// SubmitActorTask calls a method of the actor h refers to. Calls from this
// process run in the order they are submitted.
func (rt *Runtime) SubmitActorTask(ctx context.Context, h *ActorHandle, opts TaskOptions, args []Arg) ([]*Handle, error) {
	return rt.actors.submitCall(ctx, h, opts, args)
}

// submitCall does the work of Runtime.SubmitActorTask.
func (as *actorSubmitter) submitCall(ctx context.Context, h *ActorHandle, opts TaskOptions, args []Arg) ([]*Handle, error) {
	as.mu.Lock()
	a := as.byID[h.ID]
	as.mu.Unlock()
	if a == nil {
		return nil, fmt.Errorf("%w: unknown actor %s", ErrActorDied, h.ID)
	}
	as.mu.Lock()
	opts.MaxRetries = a.taskRetries
	as.mu.Unlock()
	return as.rt.tasks.submit(ctx, opts, args, a, nil)
}

// requestActorLease asks for a worker of the actor's own.
func (as *actorSubmitter) requestActorLease(a *actorRec) {
	req := &pb.RequestLease{Resources: a.resources, OwnerAddr: as.rt.addr, Dedicated: true, Detached: a.detached, ActorId: a.id[:], JobId: as.rt.cfg.Job,
		Actor: a.desc}
	a.place.fill(req)
	as.rt.tasks.askLease(req,
		func(rc RayletClient, r *pb.LeaseReply, err error) {
			if err == nil && r.Error != "" {
				as.actorCreated(a, nil, &pb.TaskError{Kind: KindInfeasible, Message: r.Error})
				return
			}
			if err == nil && r.Failure != "" {
				as.actorCreated(a, nil, sysErr(a.name, KindActorDied, r.Failure))
				return
			}
			if err != nil {
				as.actorCreated(a, nil, sysErr(a.name, KindSystem, "lease: "+err.Error()))
				return
			}
			as.rt.goroutine("start actor", func() { as.startActor(a, rc, r) })
		})
}

// startActor runs the constructor on the granted worker.
func (as *actorSubmitter) startActor(a *actorRec, rc RayletClient, r *pb.LeaseReply) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := as.rt.peers.peer(ctx, r.WorkerAddr)
	l := newLease(r, rc, conn)
	as.rt.lockAll()
	a.lease = l
	if err == nil {
		a.addr, a.conn = r.WorkerAddr, conn
	}
	spec := a.create.spec
	spec.GpuIds = r.GpuIds // the actor's GPUs, for its whole life
	as.rt.unlockAll()
	if err != nil {
		l.dead = true
		as.actorCreated(a, nil, sysErr(a.name, KindActorDied, "cannot reach the actor's worker: "+err.Error()))
		return
	}
	conn.Go(rpc.MPushTask, spec, func(body []byte, err error) {
		reply := &pb.TaskReply{}
		if err == nil {
			err = rpc.Decode(body, reply)
		}
		if err != nil {
			as.actorCreated(a, nil, sysErr(a.name, KindActorDied, "the actor's worker died while creating it: "+err.Error()))
			return
		}
		as.rt.lockAll()
		if a.create != nil {
			a.create.ran = reply
		}
		as.rt.unlockAll()
		as.actorCreated(a, conn, reply.Error)
	})
}

// actorCreated settles an actor's creation: alive, or dead with why.
func (as *actorSubmitter) actorCreated(a *actorRec, conn *rpc.Conn, failure *pb.TaskError) {
	var after actions
	as.rt.lockAll()
	if a.create != nil {
		a.ranOn = a.create.ran
		// The constructor's arguments stay pinned while the actor may need
		// to be rebuilt.
		if a.createSpec == nil {
			a.createSpec, a.pins = a.create.spec, a.create.pins
			a.create.pins = nil
		}
		as.rt.tasks.finishLocked(a.create, nil, nil, &after)
		a.create = nil
	}
	if failure != nil {
		if failure.TaskName == "" {
			failure.TaskName = a.name
		}
		as.actorDiedLocked(a, tasktable.CauseCreationFailed, failure, &after)
	} else if a.state == actorPending {
		a.state = actorAlive
		as.rt.actorStateLocked(a, tasktable.ActorAlive, "", "")
		if a.detached {
			id, addr := a.id, a.addr
			after.wake = append(after.wake, func() { as.rt.cfg.Raylet.ActorAlive(id[:], addr) })
		}
		after.wake = append(after.wake, a.wake...)
		a.wake = nil
		as.actorDispatchLocked(a, &after)
		as.rt.goroutine("watch actor", func() { as.watchActor(a, conn) })
		as.stopIfUnusedLocked(a, &after)
	}
	as.rt.unlockAll()
	after.run(as.rt)
}

// watchActor notices the death of an owned actor's worker even when no
// call is in flight.
func (as *actorSubmitter) watchActor(a *actorRec, conn *rpc.Conn) {
	<-conn.Done()
	var after actions
	as.rt.lockAll()
	if a.conn == conn && !as.rt.closed.Load() { // at Close, our side closed it
		as.processDiedLocked(a, sysErr(a.name, KindActorDied, "the actor's worker process died"), &after)
	}
	as.rt.unlockAll()
	after.run(as.rt)
}

// processDiedLocked handles the death of an actor's process: a restart
// when MaxRestarts allows (calls in flight retried when MaxTaskRetries
// does), otherwise the actor's death.
func (as *actorSubmitter) processDiedLocked(a *actorRec, why *pb.TaskError, after *actions) {
	if a.state == actorDead {
		return
	}
	if !a.owned {
		// Ask the owner again: it may have restarted the actor.
		a.state, a.deadAddr, a.conn, a.fetching = actorPending, a.addr, nil, false
		for t := range a.inflight {
			as.rt.tasks.finishLocked(t, nil, actorErr(t, why), after)
		}
		a.inflight = map[*task]struct{}{}
		a.outbox = nil
		as.actorDispatchLocked(a, after)
		return
	}
	if a.lease != nil && len(a.inflight) > 0 {
		where := a.lease.where()
		for t := range a.inflight {
			t.ran = where // it died with them: their records name it
		}
	}
	if a.noRestart || a.restartsLeft == 0 || a.createSpec == nil || as.rt.closed.Load() {
		as.actorDiedLocked(a, processDeathCause(a, as.rt.closed.Load()), why, after)
		return
	}
	if a.restartsLeft > 0 {
		a.restartsLeft--
	}
	a.restarts++
	as.rt.actorStateLocked(a, tasktable.ActorRestarting, "", "")
	// Calls in flight go back to the front of the queue, in order, if
	// they may be retried; the others fail.
	var retry []*task
	for t := range a.inflight {
		if t.retries > 0 {
			as.rt.taskEventLocked(t, tasktable.TaskFailed, actorErr(t, why))
			t.retries--
			t.spec.Attempt++
			retry = append(retry, t)
			as.rt.taskEventLocked(t, tasktable.TaskPendingNode, nil)
		} else {
			as.rt.tasks.finishLocked(t, nil, actorErr(t, why), after)
		}
	}
	sort.Slice(retry, func(i, j int) bool { return retry[i].seq < retry[j].seq })
	a.queue = append(retry, a.queue...)
	a.inflight = map[*task]struct{}{}
	a.outbox = nil // those calls are in inflight, handled above
	if a.lease != nil {
		a.lease.dead = true
		after.returned = append(after.returned, a.lease)
		a.lease = nil
	}
	a.state, a.addr, a.conn = actorPending, "", nil
	a.create = &task{spec: a.createSpec}
	after.create = append(after.create, a)
}

// actorDiedLocked fails every call waiting on the actor and gives its
// processDeathCause is why an owned actor whose process died stays dead
// (see tasktable's causes).
func processDeathCause(a *actorRec, closing bool) string {
	switch {
	case a.noRestart:
		return tasktable.CauseKilled
	case closing:
		return tasktable.CauseJobFinished
	case a.createSpec == nil:
		return tasktable.CauseCreationFailed
	}
	return tasktable.CauseOutOfRestarts
}

// worker back.
func (as *actorSubmitter) actorDiedLocked(a *actorRec, cause string, why *pb.TaskError, after *actions) {
	if a.state == actorDead {
		return
	}
	a.state, a.died = actorDead, why
	msg := why.Message
	if cause == tasktable.CauseOutOfRestarts {
		msg = fmt.Sprintf("%s, and it may not restart (restarted %d times, MaxRestarts %d)", msg, a.restarts, a.restarts+max(a.restartsLeft, 0))
	}
	as.rt.actorStateLocked(a, tasktable.ActorDead, cause, msg)
	for t := range a.inflight {
		as.rt.tasks.finishLocked(t, nil, actorErr(t, why), after)
	}
	a.inflight = map[*task]struct{}{}
	a.outbox = nil
	for _, t := range a.queue {
		as.rt.tasks.finishLocked(t, nil, actorErr(t, why), after)
	}
	a.queue = nil
	if a.lease != nil && !(a.detached && as.rt.closed.Load()) {
		after.returned = append(after.returned, a.lease)
		a.lease = nil
	}
	after.wake = append(after.wake, a.wake...)
	a.wake = nil
	for _, ref := range a.pins {
		as.rt.objs.unpinLocked(ref, after)
	}
	a.pins = nil
}

func actorErr(t *task, why *pb.TaskError) *pb.TaskError {
	out := &pb.TaskError{Kind: why.Kind, Message: why.Message, Stack: why.Stack, Pid: why.Pid, TaskName: t.spec.Name}
	if why.Kind != KindActorDied && why.Kind != KindInfeasible {
		// The constructor failed: every call fails with its error.
		out.Message = fmt.Sprintf("actor %s failed to start: %s", why.TaskName, why.Message)
	}
	return out
}

// actorDispatchLocked pushes the calls at the head of the actor's queue
// whose arguments are ready, in order.
func (as *actorSubmitter) actorDispatchLocked(a *actorRec, after *actions) {
	switch a.state {
	case actorDead:
		for _, t := range a.queue {
			as.rt.tasks.finishLocked(t, nil, actorErr(t, a.died), after)
		}
		a.queue = nil
		return
	case actorPending:
		if !a.owned && !a.fetching {
			a.fetching = true
			as.rt.goroutine("locate actor", func() { as.fetchActorAddr(a) })
		}
		return
	}
	for len(a.queue) > 0 {
		t := a.queue[0]
		if t.finished {
			a.queue = a.queue[1:]
			continue
		}
		if !t.ready {
			break // later calls wait for this one
		}
		a.queue = a.queue[1:]
		a.inflight[t] = struct{}{}
		as.rt.taskEventLocked(t, tasktable.TaskSubmitted, nil)
		a.outbox = append(a.outbox, t)
	}
	if len(a.outbox) > 0 {
		after.flush = append(after.flush, a)
	}
	if len(a.queue) == 0 {
		a.queue = nil
	}
}

// flushActor writes the actor's dispatched calls to its connection, in
// the order they were dispatched.
func (as *actorSubmitter) flushActor(a *actorRec) {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	as.rt.lockAll()
	out, conn := a.outbox, a.conn
	a.outbox = nil
	attempts := make([]int32, len(out))
	for i, t := range out {
		attempts[i] = t.spec.Attempt
	}
	as.rt.unlockAll()
	if len(out) == 0 || conn == nil {
		return
	}
	conn.Cork()
	for i, t := range out {
		as.pushActor(pushOp{t: t, a: a, c: conn}, attempts[i])
	}
	_ = conn.Uncork()
}

func (as *actorSubmitter) pushActor(p pushOp, attempt int32) {
	p.c.Go(rpc.MPushTask, p.t.spec, func(body []byte, err error) {
		reply := &pb.TaskReply{}
		if err == nil {
			err = rpc.Decode(body, reply)
		}
		var after actions
		as.rt.lockAll()
		if p.t.spec.Attempt != attempt {
			as.rt.unlockAll() // a stale answer: the call was retried since
			return
		}
		delete(p.a.inflight, p.t)
		if err == nil {
			p.t.ran = reply
		}
		if err != nil {
			why := sysErr(p.a.name, KindActorDied, "the actor's worker died: "+err.Error())
			if p.a.conn == p.c {
				p.a.inflight[p.t] = struct{}{} // settled with the others
				as.processDiedLocked(p.a, why, &after)
			} else if !p.t.finished {
				as.rt.tasks.finishLocked(p.t, nil, actorErr(p.t, why), &after)
			}
		} else {
			as.rt.tasks.finishLocked(p.t, reply.Returns, reply.Error, &after)
		}
		as.stopIfUnusedLocked(p.a, &after)
		as.rt.unlockAll()
		after.run(as.rt)
	})
}

// fetchActorAddr finds where a borrowed actor runs and connects to it.
func (as *actorSubmitter) fetchActorAddr(a *actorRec) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, why := as.locateActor(ctx, a)
	var conn *rpc.Conn
	if why == nil {
		var err error
		if conn, err = as.rt.peers.peer(ctx, addr); err != nil {
			why = sysErr(a.name, KindActorDied, "cannot reach the actor: "+err.Error())
		}
	}
	var after actions
	as.rt.lockAll()
	a.fetching = false
	switch {
	case why != nil:
		as.actorDiedLocked(a, tasktable.CauseOwnerDied, why, &after) // a borrower's view: not reported
	case a.state == actorPending:
		a.state, a.addr, a.conn = actorAlive, addr, conn
		after.wake = append(after.wake, a.wake...)
		a.wake = nil
		as.actorDispatchLocked(a, &after)
		as.rt.goroutine("watch actor", func() { as.watchActor(a, conn) })
	}
	as.rt.unlockAll()
	after.run(as.rt)
}

// locateActor returns a borrowed actor's address: from the control store
// for a detached actor, otherwise from its owner, asked again while the
// owner still names the address that just failed (it has not seen the
// death yet).
func (as *actorSubmitter) locateActor(ctx context.Context, a *actorRec) (string, *pb.TaskError) {
	if a.direct != "" {
		return a.direct, nil
	}
	oc, err := as.rt.peers.peer(ctx, a.owner)
	if err != nil {
		return "", sysErr(a.name, KindActorDied, "the actor's owner is gone: "+err.Error())
	}
	for attempt := 0; attempt <= 100; attempt++ {
		reply := &pb.ActorAddr{}
		// No deadline: the owner answers once a pending creation settles.
		if err := oc.Call(context.Background(), rpc.MGetActorAddr, &pb.ActorAddrRequest{ActorId: a.id[:]}, reply); err != nil {
			return "", sysErr(a.name, KindActorDied, "the actor's owner is gone: "+err.Error())
		}
		if reply.Error != nil {
			return "", reply.Error
		}
		// An address the owner does not know yet ("", which no dial
		// reaches) is waited out like the dead process's: a borrower once
		// failed its call after a restart with "dial unix: missing
		// address".
		as.mu.Lock()
		stale := reply.Addr == a.deadAddr || reply.Addr == ""
		as.mu.Unlock()
		if !stale {
			return reply.Addr, nil
		}
		select { // waiting for the owner to notice
		case <-time.After(20 * time.Millisecond):
		case <-as.rt.bg.Done():
			return "", sysErr(a.name, KindActorDied, ErrShutdown.Error())
		}
	}
	return "", sysErr(a.name, KindActorDied, "the actor's process died and its owner did not restart it")
}

// serveActorAddr answers, once it knows, where an actor this process owns
// runs.
func (as *actorSubmitter) serveActorAddr(_ context.Context, req *pb.ActorAddrRequest, reply func(*pb.ActorAddr, error)) {
	id, err := ids.TaskIDFrom(req.ActorId)
	if err != nil {
		reply(nil, err)
		return
	}
	as.mu.Lock()
	a := as.byID[id]
	if a == nil || !a.owned {
		as.mu.Unlock()
		reply(&pb.ActorAddr{Error: &pb.TaskError{Kind: KindActorDied, Message: "actor is gone"}}, nil)
		return
	}
	answer := func() {
		as.mu.Lock()
		addr := &pb.ActorAddr{Addr: a.addr, Error: a.died}
		as.mu.Unlock()
		reply(addr, nil)
	}
	if a.state == actorPending {
		a.wake = append(a.wake, answer)
		as.mu.Unlock()
		return
	}
	as.mu.Unlock()
	answer()
}

// KillActor stops an actor at once: its worker exits, and calls pending
// or made later fail with ErrActorDied.
func (rt *Runtime) KillActor(ctx context.Context, h *ActorHandle) error {
	return rt.actors.kill(ctx, h)
}

// kill does the work of Runtime.KillActor.
func (as *actorSubmitter) kill(ctx context.Context, h *ActorHandle) error {
	as.rt.lockAll()
	a := as.byID[h.ID]
	if a == nil {
		as.rt.unlockAll()
		return fmt.Errorf("%w: unknown actor", ErrActorDied)
	}
	for a.state == actorPending {
		// Wait until it is running (or failed) so there is a process to stop.
		done := make(chan struct{})
		a.wake = append(a.wake, func() { close(done) })
		var after actions
		as.actorDispatchLocked(a, &after)
		as.rt.unlockAll()
		after.run(as.rt)
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		as.rt.lockAll()
	}
	conn, owned, owner := a.conn, a.owned, a.owner
	a.noRestart = true
	var after actions
	as.actorDiedLocked(a, tasktable.CauseKilled, sysErr(a.name, KindActorDied, "actor was killed by rayo.Kill"), &after)
	as.rt.unlockAll()
	after.run(as.rt)
	req := &pb.ActorAddrRequest{ActorId: h.ID[:]}
	if !owned {
		// The owner must know, or it would restart the actor.
		if oc, err := as.rt.peers.peer(ctx, owner); err == nil {
			_ = oc.Notify(rpc.MKillOwnedActor, req)
		}
	}
	if conn != nil {
		_ = conn.Notify(rpc.MKillActor, req)
	}
	return nil
}

// serveKillOwnedActor is a borrower's Kill reaching the actor's owner.
// Another job's credential kills only a detached actor, which outlives
// its job and is shared by name; this job's other actors are its own.
func (as *actorSubmitter) serveKillOwnedActor(ctx context.Context, req *pb.ActorAddrRequest) {
	id, err := ids.TaskIDFrom(req.ActorId)
	if err != nil {
		return
	}
	as.rt.lockAll()
	a := as.byID[id]
	if job := rpc.JobOf(ctx); a == nil || !a.owned || job != "" && job != as.rt.cfg.Job && !a.detached {
		as.rt.unlockAll()
		return
	}
	a.noRestart = true
	conn := a.conn
	var after actions
	as.actorDiedLocked(a, tasktable.CauseKilled, sysErr(a.name, KindActorDied, "actor was killed by rayo.Kill"), &after)
	as.rt.unlockAll()
	after.run(as.rt)
	if conn != nil {
		_ = conn.Notify(rpc.MKillActor, req)
	}
}
