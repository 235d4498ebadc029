package core

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Arg is one argument of a task: an encoded value, or a ref.
type Arg struct {
	Value     codec.Payload
	Ref       *Handle
	Contained []*Handle // refs nested in Value
}

// TaskOptions are how a task is to be run.
type TaskOptions struct {
	Function        string // registry name
	Name            string // shown in errors and logs
	NumReturns      int
	Resources       map[string]float64
	Placement       Placement
	Shape           *Shape // precomputed from Function, Resources and Placement; optional
	MaxRetries      int    // retries after a worker dies
	RetryExceptions bool   // also retry when the function fails
}

// taskSubmitter holds the tasks this process submitted and not yet
// finished, and the queues of those ready to run, each with the leases
// (workers) that run them.
type taskSubmitter struct {
	rt *Runtime // the runtime it belongs to: its other tables, peers and raylet

	// mu protects byID, queues, and the fields of every task, schedQueue
	// and lease. An actor's calls are tasks too: what settles them holds
	// the actors' lock first.
	mu     sync.Mutex
	byID   map[ids.TaskID]*task
	queues map[string]*schedQueue
}

// task is one submitted task, owned here until it finishes.
type task struct {
	spec       *pb.TaskSpec
	returns    []ids.ObjectID
	pins       []*pb.ObjectRef // arguments kept alive until the task ends
	unresolved int
	argIdx     map[ids.ObjectID][]int
	q          *schedQueue
	retries    int
	retryApp   bool
	lease      *lease
	cancelled  bool
	finished   bool
	actor      *actorRec // a method call on this actor
	create     *actorRec // the creation of this actor
	ready      bool      // actor call: arguments resolved
	prefer     string    // the node (raylet address) with most of its argument bytes
	seq        uint64    // actor call: submission order
	evSeen     bool      // an event was recorded for attempt evAttempt
	evAttempt  int32
	evDropped  bool          // attempt evAttempt was left out of the events (over the budget)
	ran        *pb.TaskReply // the last reply: where and when the attempt ran
	ev         *pb.TaskEvent // the attempt's changes since the last flush of events
	oomKills   int           // times a memory monitor killed its worker (memory.go)
}

// schedQueue holds the ready tasks of one resource shape and the leases
// (workers) that run them.
type schedQueue struct {
	key        string
	resources  []*pb.Resource
	tasks      []*task
	leases     []*lease
	requesting int
	avgExec    time.Duration // moving average of execution time; 0 = unknown
	place      Placement
}

// lease is a worker granted to this owner.
type lease struct {
	id       uint64
	rc       RayletClient // the raylet that granted it; nil: this node's
	addr     string
	conn     *rpc.Conn
	inflight map[*task]struct{}
	q        *schedQueue
	gpus     []int32 // the GPUs the lease holds, which its tasks see
	dead     bool
	// returning is set while a return after leaseGrace is scheduled.
	returning bool
	oom       string // why a memory monitor kills its worker, once told (memory.go)
	// worker, pid and node name the lease's worker, for the record of a
	// task it dies running before it reports the task (see where).
	worker ids.WorkerID
	node   ids.NodeID
	pid    int32
}

// newLease is the lease r grants, from raylet rc, its worker reached on
// conn.
func newLease(r *pb.LeaseReply, rc RayletClient, conn *rpc.Conn) *lease {
	l := &lease{id: r.LeaseId, rc: rc, addr: r.WorkerAddr, conn: conn, inflight: make(map[*task]struct{}), gpus: r.GpuIds, pid: r.WorkerPid}
	l.worker, _ = ids.WorkerIDFrom(r.WorkerId)
	l.node, _ = ids.NodeIDFrom(r.NodeId)
	return l
}

// where names the lease's worker (its ID, pid and node) as a task's reply
// would, for the record of a task it died running. It is made only then:
// kept for every lease, it was a fifth of a KiB of the driver's heap per
// actor.
func (l *lease) where() *pb.TaskReply {
	where := &pb.TaskReply{Pid: l.pid}
	if l.worker != (ids.WorkerID{}) {
		where.WorkerId = l.worker[:]
	}
	if l.node != (ids.NodeID{}) {
		where.NodeId = l.node.Name()
	}
	return where
}

// leaseGrace is how long an idle lease is kept for the owner's next task.
const leaseGrace = 2 * time.Millisecond

// returnIfIdle gives a lease back if it is still idle.
func (ts *taskSubmitter) returnIfIdle(q *schedQueue, l *lease) {
	var after actions
	ts.mu.Lock()
	l.returning = false
	if !ts.rt.closed.Load() && len(l.inflight) == 0 && len(q.tasks) == 0 {
		for i, x := range q.leases {
			if x == l {
				q.leases = append(q.leases[:i], q.leases[i+1:]...)
				after.returned = append(after.returned, l)
				break
			}
		}
	}
	ts.mu.Unlock()
	after.run(ts.rt)
}

type pushOp struct {
	t *task
	l *lease
	a *actorRec // an actor call...
	c *rpc.Conn // ...pushed on this connection to the actor
}

const maxLeaseRequests = 10

// depth is how many tasks to keep in flight on one worker: one for long
// or unknown tasks (so each gets a worker of its own), more for short ones
// (to hide the round trip).
func (q *schedQueue) depth() int {
	switch {
	case q.avgExec == 0 || q.avgExec > 2*time.Millisecond:
		return 1
	case q.avgExec > 200*time.Microsecond:
		return 4
	default:
		return 32
	}
}

// Shape is the scheduling class of a task: its function and resources.
// Tasks are queued (and their workers pipelined) per shape, so the speed of
// one function never sets another's.
type Shape struct {
	key   string
	res   []*pb.Resource
	place Placement
}

// Placement is where tasks may run, beyond their resources.
type Placement struct {
	Strategy string // "" (local first, then wherever there is room) or "SPREAD"
	Node     string // node affinity: the node's ID (rayo.NodeID)...
	Soft     bool   // ...or, when soft, elsewhere if it cannot
	Group    []byte // a placement group: its resources come from one of its bundles...
	Bundle   int    // ...this one (-1: any)
	Capture  bool   // and the tasks it submits go to the group too
}

// NewShape computes a task's scheduling class.
func NewShape(function string, res map[string]float64, p Placement) *Shape {
	if len(p.Group) > 0 {
		res = placement.Demand(res, hex.EncodeToString(p.Group), p.Bundle)
	}
	key, list := shapeKey(res)
	return &Shape{key: fmt.Sprintf("%s|%s|%s|%s|%v", function, key, p.Strategy, p.Node, p.Soft), res: list, place: p}
}

func shapeKey(res map[string]float64) (string, []*pb.Resource) {
	names := make([]string, 0, len(res))
	for n := range res {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	out := make([]*pb.Resource, 0, len(names))
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%g;", n, res[n])
		out = append(out, &pb.Resource{Name: n, Quantity: res[n]})
	}
	return b.String(), out
}

// Submit starts a task and returns handles to its results at once.
func (rt *Runtime) Submit(ctx context.Context, opts TaskOptions, args []Arg) ([]*Handle, error) {
	return rt.tasks.submit(ctx, opts, args, nil, nil)
}

// submit starts a task: a plain one, a call on actor (when actor is set),
// or the creation of actor create (when create is set).
func (ts *taskSubmitter) submit(ctx context.Context, opts TaskOptions, args []Arg, actor, create *actorRec) ([]*Handle, error) {
	t := ts.newTask(opts, len(args), actor, create)
	// Large values passed by value go to the store first, as Put would.
	for i, a := range args {
		if a.Ref == nil && a.Value.Len() > InlineLimit {
			h, err := ts.rt.objs.put(ctx, a.Value, a.Contained)
			if err != nil {
				return nil, err
			}
			args[i] = Arg{Ref: h}
			defer h.Release() // the task's pin keeps it from here on
		}
	}
	shape := opts.Shape
	if shape == nil {
		shape = NewShape(opts.Function, opts.Resources, opts.Placement)
	}
	if p := shape.place; p.Capture && len(p.Group) > 0 {
		t.spec.CaptureGroup = p.Group
	}
	var after actions
	ts.rt.lockFor(t)
	if ts.rt.closed.Load() {
		ts.rt.unlockFor(t)
		return nil, ts.rt.errShutdown()
	}
	if err := ts.addArgsLocked(t, args, &after); err != nil {
		ts.rt.unlockFor(t)
		after.run(ts.rt)
		return nil, err
	}
	ts.placeLocked(t, shape)
	handles := make([]*Handle, opts.NumReturns)
	t.returns = make([]ids.ObjectID, opts.NumReturns)
	tid, _ := ids.TaskIDFrom(t.spec.TaskId)
	for i := range handles {
		id := ids.ForReturn(tid, i)
		obj := &object{owned: true, owner: ts.rt.addr, task: t}
		ts.rt.objs.byID[id] = obj
		t.returns[i] = id
		handles[i] = ts.rt.objs.newHandleLocked(id, ts.rt.addr, obj)
	}
	ts.byID[tid] = t
	ts.rt.taskEventLocked(t, tasktable.TaskPendingArgs, nil)
	if t.unresolved == 0 {
		ts.enqueueLocked(t, &after)
	}
	ts.rt.unlockFor(t)
	after.run(ts.rt)
	return handles, nil
}

// newTask makes the record and spec of a task about to be submitted.
func (ts *taskSubmitter) newTask(opts TaskOptions, nargs int, actor, create *actorRec) *task {
	tid := ids.NewTaskID()
	if create != nil {
		tid = create.id
	}
	spec := &pb.TaskSpec{
		TaskId:     tid[:],
		Function:   opts.Function,
		Name:       opts.Name,
		NumReturns: int32(opts.NumReturns),
		OwnerAddr:  ts.rt.addr,
		Args:       make([]*pb.TaskArg, nargs),
	}
	if actor != nil {
		spec.ActorId = actor.id[:]
	}
	if create != nil {
		spec.ActorId, spec.ActorCreate, spec.MaxConcurrency = tid[:], true, int32(create.maxConcurrency)
	}
	return &task{spec: spec, retries: opts.MaxRetries, retryApp: opts.RetryExceptions, actor: actor, create: create}
}

// addArgsLocked puts a task's arguments in its spec, pins the objects they
// refer to, and waits for those pending (t.unresolved counts them). It
// fails, pinning nothing, when an argument's object is freed already.
// The caller holds the locks of lockFor(t).
func (ts *taskSubmitter) addArgsLocked(t *task, args []Arg, after *actions) error {
	spec := t.spec
	for i, a := range args {
		if a.Ref == nil {
			loc := &pb.Locator{Inline: a.Value.Bytes()}
			for _, h := range a.Contained {
				ref := &pb.ObjectRef{Id: h.ID[:], OwnerAddr: h.Owner}
				ts.rt.objs.pinLocked(ref, false)
				t.pins = append(t.pins, ref)
				loc.Contained = append(loc.Contained, ref)
			}
			spec.Args[i] = &pb.TaskArg{Value: loc}
			continue
		}
		ref := &pb.ObjectRef{Id: a.Ref.ID[:], OwnerAddr: a.Ref.Owner}
		spec.Args[i] = &pb.TaskArg{Ref: ref}
		ts.rt.objs.pinLocked(ref, false)
		t.pins = append(t.pins, ref)
		obj := ts.rt.objs.byID[a.Ref.ID]
		if obj == nil {
			for _, p := range t.pins {
				ts.rt.objs.unpinLocked(p, after)
			}
			return fmt.Errorf("%w: argument %d (%s)", ErrObjectFreed, i, a.Ref.ID)
		}
		if t.argIdx == nil {
			t.argIdx = make(map[ids.ObjectID][]int)
		}
		if len(t.argIdx[a.Ref.ID]) == 0 {
			t.unresolved++
			id := a.Ref.ID
			ts.rt.objs.whenReadyLocked(id, obj, func() { ts.resolved(t, id) }, after)
		}
		t.argIdx[a.Ref.ID] = append(t.argIdx[a.Ref.ID], i)
	}
	return nil
}

// placeLocked files a new task where it waits to run: the queue of its
// shape, its actor's record (a creation), or its actor's queue of calls.
// The caller holds the locks of lockFor(t).
func (ts *taskSubmitter) placeLocked(t *task, shape *Shape) {
	switch {
	case t.create != nil:
		c := t.create
		c.resources, c.place = shape.res, shape.place
		c.create = t
		ts.rt.actorStateLocked(c, tasktable.ActorPending, "", "")
		ts.rt.actors.byID[c.id] = c
	case t.actor != nil:
		// Calls from this process keep their submission order.
		t.actor.nextSeq++
		t.seq = t.actor.nextSeq
		t.actor.queue = append(t.actor.queue, t)
	default:
		q := ts.queues[shape.key]
		if q == nil {
			q = &schedQueue{key: shape.key, resources: shape.res, place: shape.place}
			ts.queues[shape.key] = q
		}
		t.q = q
	}
}

// resolved is called when one argument object is no longer pending.
func (ts *taskSubmitter) resolved(t *task, id ids.ObjectID) {
	var after actions
	ts.rt.lockFor(t)
	if t.finished {
		ts.rt.unlockFor(t)
		return
	}
	obj := ts.rt.objs.byID[id]
	var loc *pb.Locator
	if obj != nil {
		loc = obj.loc
	}
	if loc == nil {
		loc = &pb.Locator{Error: sysErr(t.spec.Name, KindSystem, ErrObjectFreed.Error())}
	}
	if loc.Error != nil {
		// A failed argument fails the task without running it.
		e := loc.Error
		if e.TaskName == "" {
			// The argument's error names no task (a borrowed object whose
			// owner died): it is this task's.
			e = proto.Clone(e).(*pb.TaskError)
			e.TaskName = t.spec.Name
		}
		ts.finishLocked(t, nil, e, &after)
		ts.rt.unlockFor(t)
		after.run(ts.rt)
		return
	}
	for _, i := range t.argIdx[id] {
		t.spec.Args[i].Value = loc
	}
	t.unresolved--
	if t.unresolved == 0 {
		t.prefer = ts.localityLocked(t)
		ts.enqueueLocked(t, &after)
	}
	ts.rt.unlockFor(t)
	after.run(ts.rt)
}

// enqueueLocked makes a task whose arguments are ready eligible to run:
// queued for a lease, pushed to its actor, or its actor's lease asked
// for. The caller holds the locks of lockFor(t).
func (ts *taskSubmitter) enqueueLocked(t *task, after *actions) {
	ts.rt.taskEventLocked(t, tasktable.TaskPendingNode, nil)
	switch {
	case t.actor != nil:
		t.ready = true
		ts.rt.actors.actorDispatchLocked(t.actor, after)
		return
	case t.create != nil:
		after.create = append(after.create, t.create)
		return
	}
	t.q.tasks = append(t.q.tasks, t)
	ts.dispatchLocked(t.q, after)
}

// dispatchLocked gives queued tasks to leased workers, asks for more
// workers while tasks wait, and returns workers that have nothing to do.
// The caller holds tasks.mu.
func (ts *taskSubmitter) dispatchLocked(q *schedQueue, after *actions) {
	depth := q.depth()
	for len(q.tasks) > 0 {
		var best *lease
		for _, l := range q.leases {
			if !l.dead && len(l.inflight) < depth && (best == nil || len(l.inflight) < len(best.inflight)) {
				best = l
			}
		}
		if best == nil {
			break
		}
		t := q.tasks[0]
		q.tasks[0] = nil
		q.tasks = q.tasks[1:]
		if t.cancelled || t.finished {
			continue
		}
		t.lease = best
		t.spec.GpuIds = best.gpus
		best.inflight[t] = struct{}{}
		ts.rt.taskEventLocked(t, tasktable.TaskSubmitted, nil)
		after.push = append(after.push, pushOp{t: t, l: best})
	}
	if len(q.tasks) == 0 {
		q.tasks = nil
		// Give back idle workers after a short grace: a caller that submits
		// its next task at once (a loop of Get(f.Remote())) reuses the lease
		// instead of asking the raylet again.
		for _, l := range q.leases {
			if len(l.inflight) == 0 && !l.returning {
				l.returning = true
				l, q := l, q
				ts.rt.after("return idle lease", leaseGrace, func() { ts.returnIfIdle(q, l) })
			}
		}
		return
	}
	for want := len(q.tasks); q.requesting < want && q.requesting < maxLeaseRequests; {
		q.requesting++
		after.lease = append(after.lease, q)
	}
}

func (ts *taskSubmitter) requestLease(q *schedQueue) {
	req := &pb.RequestLease{Resources: q.resources, OwnerAddr: ts.rt.addr, JobId: ts.rt.cfg.Job}
	ts.mu.Lock()
	if len(q.tasks) > 0 {
		req.PreferredNode = q.tasks[0].prefer
		req.Retriable, req.TaskName = q.tasks[0].retries != 0, q.tasks[0].spec.Name
	}
	ts.mu.Unlock()
	q.place.fill(req)
	ts.askLease(req, func(rc RayletClient, r *pb.LeaseReply, err error) {
		if err == nil && r.Error != "" {
			ts.leaseFailed(q, &pb.TaskError{Kind: KindInfeasible, Message: r.Error})
			return
		}
		if err == nil && r.Failure != "" {
			ts.leaseFailed(q, sysErr("", KindSystem, r.Failure))
			return
		}
		if err != nil {
			ts.leaseFailed(q, sysErr("", KindSystem, "lease: "+err.Error()))
			return
		}
		if ts.rt.peers.has(r.WorkerAddr) {
			ts.leaseGranted(q, rc, r) // no dial needed: carry on here
		} else {
			ts.rt.goroutine("lease granted", func() { ts.leaseGranted(q, rc, r) })
		}
	})
}

func (ts *taskSubmitter) leaseFailed(q *schedQueue, e *pb.TaskError) {
	var after actions
	ts.rt.lockTasks()
	q.requesting--
	for _, t := range q.tasks {
		te := proto.Clone(e).(*pb.TaskError)
		te.TaskName = t.spec.Name
		ts.finishLocked(t, nil, te, &after)
	}
	q.tasks = nil
	ts.rt.unlockTasks()
	after.run(ts.rt)
}

func (ts *taskSubmitter) leaseGranted(q *schedQueue, rc RayletClient, r *pb.LeaseReply) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := ts.rt.peers.peer(ctx, r.WorkerAddr)
	l := newLease(r, rc, conn)
	l.q = q
	var after actions
	ts.mu.Lock()
	q.requesting--
	if err != nil || ts.rt.closed.Load() {
		l.dead = err != nil
		after.returned = append(after.returned, l)
		if len(q.tasks) > 0 && !ts.rt.closed.Load() {
			ts.dispatchLocked(q, &after)
		}
	} else {
		q.leases = append(q.leases, l)
		ts.dispatchLocked(q, &after)
	}
	ts.mu.Unlock()
	after.run(ts.rt)
}

// push sends one task to its leased worker.
func (ts *taskSubmitter) push(p pushOp) {
	start := time.Now()
	p.l.conn.Go(rpc.MPushTask, p.t.spec, func(body []byte, err error) {
		reply := &pb.TaskReply{}
		if err == nil {
			err = rpc.Decode(body, reply)
		}
		ts.taskReplied(p, reply, err, time.Since(start))
	})
}

func (ts *taskSubmitter) taskReplied(p pushOp, reply *pb.TaskReply, err error, rtt time.Duration) {
	var after actions
	ts.rt.lockTasks()
	t, l, q := p.t, p.l, p.l.q
	delete(l.inflight, t)
	if err == nil {
		t.ran = reply
	}
	switch {
	case err != nil:
		// The worker is gone (or the connection broke): retry elsewhere.
		l.dead = true
		t.ran = l.where()
		if t.cancelled {
			ts.finishLocked(t, nil, sysErr(t.spec.Name, KindCancelled, ErrTaskCancelled.Error()), &after)
		} else if ts.oomFailedLocked(t, l, &after) {
			// killed by the memory monitor: retried after a backoff, or failed
		} else if t.retries > 0 && !ts.rt.closed.Load() {
			ts.rt.taskEventLocked(t, tasktable.TaskFailed, sysErr(t.spec.Name, KindWorkerDied, "worker died while running the task: "+err.Error()))
			t.retries--
			t.spec.Attempt++
			t.lease = nil
			q.tasks = append([]*task{t}, q.tasks...)
			ts.rt.taskEventLocked(t, tasktable.TaskPendingNode, nil)
		} else {
			ts.finishLocked(t, nil, sysErr(t.spec.Name, KindWorkerDied,
				fmt.Sprintf("worker died while running the task (%d attempts): %v", t.spec.Attempt+1, err)), &after)
		}
	case reply.Error != nil && reply.Error.Kind == KindApp || reply.Error != nil && reply.Error.Kind == KindPanic:
		if t.retryApp && t.retries > 0 && !ts.rt.closed.Load() {
			ts.rt.taskEventLocked(t, tasktable.TaskFailed, reply.Error)
			t.retries--
			t.spec.Attempt++
			t.lease = nil
			q.tasks = append(q.tasks, t)
			ts.rt.taskEventLocked(t, tasktable.TaskPendingNode, nil)
		} else {
			ts.finishLocked(t, nil, reply.Error, &after)
		}
	default:
		if reply.ExecNs > 0 {
			d := time.Duration(reply.ExecNs)
			if q.avgExec == 0 {
				q.avgExec = d
			} else {
				q.avgExec = (q.avgExec*7 + d) / 8
			}
		} else if q.avgExec == 0 {
			q.avgExec = rtt
		}
		ts.finishLocked(t, reply.Returns, reply.Error, &after)
	}
	t.lease = nil
	if l.dead && len(l.inflight) == 0 {
		for i, x := range q.leases {
			if x == l {
				q.leases = append(q.leases[:i], q.leases[i+1:]...)
				after.returned = append(after.returned, l)
				break
			}
		}
	}
	if !ts.rt.closed.Load() {
		ts.dispatchLocked(q, &after)
	}
	ts.rt.unlockTasks()
	after.run(ts.rt)
}

// finishLocked settles a task's return objects with its results or error,
// and drops the task's hold on its arguments. The caller holds the locks
// of lockFor(t).
func (ts *taskSubmitter) finishLocked(t *task, returns []*pb.Locator, e *pb.TaskError, after *actions) {
	if t.finished {
		return
	}
	t.finished = true
	if e == nil {
		ts.rt.taskEventLocked(t, tasktable.TaskFinished, nil)
	} else {
		ts.rt.taskEventLocked(t, tasktable.TaskFailed, e)
	}
	tid, _ := ids.TaskIDFrom(t.spec.TaskId)
	delete(ts.byID, tid)
	if e == nil && len(returns) != len(t.returns) {
		e = sysErr(t.spec.Name, KindSystem, fmt.Sprintf("task returned %d values, expected %d", len(returns), len(t.returns)))
	}
	var workerAddr string
	switch {
	case t.lease != nil:
		workerAddr = t.lease.addr
	case t.actor != nil:
		workerAddr = t.actor.addr
	}
	for i, id := range t.returns {
		obj := ts.rt.objs.byID[id]
		var loc *pb.Locator
		if e != nil {
			if e.TaskName == "" {
				e.TaskName = t.spec.Name
			}
			loc = &pb.Locator{Error: e}
		} else {
			loc = returns[i]
			for _, ref := range loc.Contained {
				ts.rt.objs.pinLocked(ref, ref.OwnerAddr != ts.rt.addr && ref.OwnerAddr == workerAddr)
			}
		}
		if obj == nil {
			// Nobody holds the result: release what it carries at once.
			if loc.InStore {
				after.freeAt(id, loc)
			}
			for _, ref := range loc.Contained {
				ts.rt.objs.unpinLocked(ref, after)
			}
			continue
		}
		obj.contained = loc.Contained
		if e == nil {
			ts.rt.objs.keepLineageLocked(t, obj, loc)
		}
		ts.rt.objs.completeLocked(obj, loc, after)
		ts.rt.objs.maybeFreeLocked(id, obj, after)
	}
	for _, ref := range t.pins {
		ts.rt.objs.unpinLocked(ref, after)
	}
	t.pins = nil
}

// Cancel stops the task that makes h: a queued task never runs, a running
// one has its worker stopped. Its results fail with ErrTaskCancelled.
// Cancel returns once the task's result is settled (cancelled, or done
// before the worker heard), or with ctx's error when ctx ends first; a
// ctx already ended cancels nothing.
func (rt *Runtime) Cancel(ctx context.Context, h *Handle) error {
	return rt.tasks.cancel(ctx, h)
}

// cancel does the work of Runtime.Cancel.
func (ts *taskSubmitter) cancel(ctx context.Context, h *Handle) error {
	if h == nil {
		return ErrNilRef
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var after actions
	ts.rt.lockAll()
	obj := ts.rt.objs.byID[h.ID]
	if obj == nil || obj.task == nil {
		ts.rt.unlockAll()
		return nil // finished already (or not ours): nothing to stop
	}
	t := obj.task
	t.cancelled = true
	l := t.lease
	if l == nil {
		ts.finishLocked(t, nil, sysErr(t.spec.Name, KindCancelled, ErrTaskCancelled.Error()), &after)
	}
	ts.rt.unlockAll()
	after.run(ts.rt)
	if l == nil {
		return nil
	}
	// A failed send means the worker's connection is gone: the task then
	// settles as its worker's death does.
	_ = l.conn.Notify(rpc.MCancelTask, &pb.ObjectIDs{Ids: [][]byte{t.spec.TaskId}})
	_, done, err := ts.rt.objs.lookup(h)
	if err != nil || done == nil {
		return nil // settled, or freed or shut down: nothing left to stop
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("core: cancel %s: %w", h.ID, ctx.Err())
	}
}

// Pushed reports whether the task making h has been sent to a worker.
func (rt *Runtime) Pushed(h *Handle) bool {
	return rt.tasks.pushed(h)
}

// pushed does the work of Runtime.Pushed.
func (ts *taskSubmitter) pushed(h *Handle) bool {
	ts.rt.lockTasks()
	defer ts.rt.unlockTasks()
	obj := ts.rt.objs.byID[h.ID]
	return obj != nil && obj.task != nil && obj.task.lease != nil
}

// fill puts the placement into a lease request.
func (p Placement) fill(req *pb.RequestLease) {
	req.Strategy, req.PlacementGroup = p.Strategy, p.Group
	if p.Node != "" {
		req.AffinityNode, req.AffinitySoft = []byte(p.Node), p.Soft
	}
}

// localityLocked is the node holding most of a task's argument bytes, when
// that is another node than this one. The caller holds tasks.mu.
func (ts *taskSubmitter) localityLocked(t *task) string {
	if ts.rt.cfg.NodeAddr == "" {
		return ""
	}
	var bytes map[string]int64
	for _, a := range t.spec.Args {
		if loc := a.Value; loc != nil && loc.InStore && loc.NodeAddr != "" {
			if bytes == nil {
				bytes = make(map[string]int64)
			}
			bytes[loc.NodeAddr] += loc.Size
		}
	}
	best, most := "", int64(0)
	for node, n := range bytes {
		if n > most || n == most && node < best {
			best, most = node, n
		}
	}
	if best == ts.rt.cfg.NodeAddr {
		return ""
	}
	return best
}
