// Package core is the owner side of rayo, in every process that submits
// work (the driver and each worker): it submits tasks and leases workers
// for them, keeps the objects it owns in an in-process memory store,
// counts their references, and fetches the objects it borrows.
//
// # Structure and lock order
//
// A Runtime owns three tables, as Ray's CoreWorker does, each a type with
// its own lock and the methods that work on it:
//
//   - actorSubmitter (actor.go): the actors this process created or holds
//     handles to, and their queues of calls; it creates actors, sends
//     their calls in order, restarts them and kills them;
//   - taskSubmitter (submit.go, with leasing in crossnode.go and
//     groups.go): the tasks it submitted and not finished, the queues of
//     ready tasks by shape, and the leases that run them; it resolves
//     arguments, leases workers, pushes tasks and settles their replies;
//   - objectTable (objects.go): the memory store and reference counts of
//     the objects it owns or borrows; it puts, gets and waits, serves
//     borrowers and fetches from owners.
//
// Each table reaches the others, and what they share (the raylet, peers,
// the goroutine helper, the events), through its rt. The Runtime's
// exported methods are the surface that the rayo package and the worker
// use: those of one table only delegate to it. What spans the tables
// stays on the Runtime: Close, the lock helpers below, lineage
// (lineage.go), events (events.go) and placement groups (groups.go).
//
// Locks are taken in this order, and never against it (one may be skipped):
//
//  1. actorRec.sendMu (one actor's writes of calls, in order)
//  2. actors.mu
//  3. tasks.mu
//  4. objs.mu
//  5. leaves, held with nothing taken after them: events.mu (eventBuf),
//     goMu (goroutine), peers.mu (peerSet); gcMu is held alone.
//
// Settling a task touches both the task and its return objects, so the
// task paths take tasks.mu then objs.mu (lockTasks), and an actor's paths
// all three (lockAll); lockFor(t) takes what task t needs. The objects'
// own paths (Get, Put, Wait, handles, borrowers) take objs.mu alone, and
// leasing and dispatch take tasks.mu alone. A function named ...Locked
// runs with the locks its comment names. What a locked section decides to
// do that may block or call out (pushes, lease requests and returns,
// frees, waking waiters) is collected in actions and run after unlocking.
//
// Every goroutine core starts goes through Runtime.goroutine (or after,
// for a timer), which Close waits for.
package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// InlineLimit is the largest value kept in its owner's memory and sent
// inside messages; larger ones go to the node's shared-memory store.
const InlineLimit = 100 << 10

// RayletClient is how a process reaches its node's raylet: a direct call
// in the driver that hosts it, a socket elsewhere. Callbacks run outside
// the raylet's locks.
type RayletClient interface {
	RequestLease(req *pb.RequestLease, cb func(*pb.LeaseReply, error))
	ReturnLease(req *pb.ReturnLease)
	SetBlocked(worker ids.WorkerID, blocked bool)
	// CreateObject reserves size bytes for object id in the node's store;
	// owner is the endpoint of the object's owner, which a drain of the
	// node tells where the object went. An object sealed there already (a
	// task run again) is not made twice: the error is an
	// *objstore.ExistingError naming that copy.
	CreateObject(ctx context.Context, id ids.ObjectID, size int64, owner string) (int64, error)
	SealObjects(ids []ids.ObjectID)
	FreeObjects(ids []ids.ObjectID)
	// PinObject keeps an object of this node's store in memory for this
	// process, restoring it if it was spilled, and says where it is now;
	// UnpinObjects lets it go. It fails with ErrObjectLost when the node
	// does not have it.
	PinObject(ctx context.Context, id ids.ObjectID) (int64, error)
	UnpinObjects(ids []ids.ObjectID)
	RegisterActorName(ctx context.Context, a *pb.ActorName) error
	LookupActorName(ctx context.Context, namespace, name string) (*pb.ActorName, error)
	ActorAlive(actorID []byte, workerAddr string)
	// PullObject copies an object from another node's store (the raylet
	// at from) into this node's, pins the copy (see PinObject) and returns
	// where it is here.
	PullObject(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error)
	// PlacementGroup creates, waits for, removes, finds or lists placement
	// groups (the node's own, or the control store's in a cluster).
	PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error)
}

// Config sets up a Runtime.
type Config struct {
	Addr     string // Unix socket this process serves borrowers (and, in a worker, tasks) on
	Raylet   RayletClient
	Arena    *objstore.Arena
	WorkerID ids.WorkerID // zero in the driver
	IsWorker bool
	Job      string // the job whose executable workers run ("" = the node's own)

	// In a cluster of several nodes:
	ListenTCP string // also serve other nodes here (HOST:0)
	// Token is presented and required over TCP: the job's credential
	// (pki.JobCredential) for a job's driver or worker.
	Token string
	// JobKey, when set, is the cluster's public job key (pki.JobKey):
	// the TCP listener takes other jobs' credentials it signed, as those
	// jobs (callers of this job's named actors).
	JobKey   string
	Node     string // this node's name in endpoints (see rpc.Endpoint)
	NodeAddr string // this node's raylet over TCP, as locators name it
	// DialRaylet connects to another node's raylet; what that raylet
	// pushes on the connection (a worker the memory monitor kills) goes to
	// h.
	DialRaylet func(ctx context.Context, addr string, h rpc.Handler) (RayletClient, error)
}

// Runtime is one process's owner and borrower state.
type Runtime struct {
	cfg  Config
	addr string // this process's endpoint (see rpc.Endpoint)
	srv  *rpc.Server
	tcp  *rpc.Server // cluster: other nodes' peers

	handlers *rpc.Mux // what this process serves its peers
	pushes   *rpc.Mux // what other nodes' raylets push on its connections to them (RayletPushes)

	// The three tables, each with its own lock (see the lock order above).
	actors actorSubmitter
	tasks  taskSubmitter
	objs   objectTable
	closed atomic.Bool // Close (or Fence) began; set holding all three locks, so read under any
	// tornDown: Close began; fenced: why the node stopped this runtime's
	// work (Fence), or nil.
	tornDown atomic.Bool
	fenced   atomic.Pointer[NodeFencedError]

	peers *peerSet // connections to other processes and nodes' raylets

	blocked atomic.Int32  // worker: Gets in progress, to lend the CPU once
	calls   atomic.Uint64 // Put, Get and Wait calls made (Calls)

	bg       context.Context // ends when Close begins: what spawned goroutines wait on
	bgCancel context.CancelFunc
	goMu     sync.Mutex     // protects stopped, live; held while adding to gos
	stopped  bool           // Close began: goroutine refuses
	live     map[string]int // goroutines running, by name
	gos      sync.WaitGroup // goroutines started by goroutine
	gcMu     sync.Mutex     // one store-full collection at a time

	events  eventBuf                   // guarded by mu
	running atomic.Pointer[ids.TaskID] // worker: the task it runs now
	capture atomic.Pointer[[]byte]     // worker: the placement group its tasks' children go to
	evStop  chan struct{}              // closed by Close: the flusher's last batch
	evDone  chan struct{}              // closed when the flusher is done
}

// New starts a runtime serving on cfg.Addr. mux, if not nil, holds the
// methods the process serves besides the runtime's own (a worker's task
// service); the runtime adds its own to it.
func New(cfg Config, mux *rpc.Mux) (*Runtime, error) {
	rt := &Runtime{
		cfg:      cfg,
		addr:     cfg.Addr,
		actors:   actorSubmitter{byID: make(map[ids.TaskID]*actorRec)},
		tasks:    taskSubmitter{byID: make(map[ids.TaskID]*task), queues: make(map[string]*schedQueue)},
		objs:     objectTable{byID: make(map[ids.ObjectID]*object)},
		handlers: mux,
	}
	if rt.handlers == nil {
		rt.handlers = rpc.NewMux("core")
	}
	rpc.HandleAsync(rt.handlers, rpc.GetObject, rt.objs.serveGetObject)
	rpc.HandleAsync(rt.handlers, rpc.GetActorAddr, rt.actors.serveActorAddr)
	rpc.HandleNotify(rt.handlers, rpc.KillOwnedActor, rt.actors.serveKillOwnedActor)
	rpc.HandleNotify(rt.handlers, rpc.ReleaseBorrowed, rt.objs.serveReleaseBorrowed)
	rpc.Handle(rt.handlers, rpc.ObjectsMoved, rt.objs.serveObjectsMoved)
	rpc.Handle(rt.handlers, rpc.ListObjects, rt.objs.serveListObjects)
	rt.pushes = rpc.NewMux("core")
	RayletPushes(rt.pushes, func() *Runtime { return rt })
	rt.actors.rt, rt.tasks.rt, rt.objs.rt = rt, rt, rt
	rt.peers = newPeerSet(rt)
	rt.objs.fetch = func(id ids.ObjectID, owner string) {
		rt.goroutine("fetch object", func() { rt.objs.fetchFromOwner(id, owner) })
	}
	rt.bg, rt.bgCancel = context.WithCancel(context.Background())
	_ = os.Remove(cfg.Addr)
	ln, err := rpc.ListenUnix(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("core: listen %s: %w", cfg.Addr, err)
	}
	rt.srv = rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return rt }, nil)
	if cfg.ListenTCP != "" {
		tl, err := net.Listen("tcp", cfg.ListenTCP)
		if err != nil {
			_ = rt.srv.Close()
			return nil, fmt.Errorf("core: listen %s: %w", cfg.ListenTCP, err)
		}
		rt.tcp = rpc.NewServer(tl, func(*rpc.Conn) rpc.Handler { return rt }, nil)
		rt.tcp.RequireToken(cfg.Token)
		if cfg.JobKey != "" {
			rt.tcp.TrustJobKey(cfg.JobKey)
		}
		rt.addr = rpc.Endpoint(cfg.Addr, tl.Addr().String(), cfg.Node)
	}
	rt.objs.self = rt.addr
	if to, ok := cfg.Raylet.(EventReporter); ok && eventsEnabled() {
		rt.events.on = true
		rt.evStop, rt.evDone = make(chan struct{}), make(chan struct{})
		rt.goroutine("event flusher", func() {
			defer close(rt.evDone)
			rt.flushEvents(to, rt.evStop)
		})
	}
	return rt, nil
}

// Handle serves one frame from a peer.
func (rt *Runtime) Handle(c *rpc.Conn, m rpc.Method, kind rpc.Kind, id uint64, body []byte) {
	rt.handlers.Handle(c, m, kind, id, body)
}

// Addr is where this runtime serves its peers.
func (rt *Runtime) Addr() string { return rt.addr }

// IsWorker reports whether this runtime lives in a worker process.
func (rt *Runtime) IsWorker() bool { return rt.cfg.IsWorker }

// Close fails what is pending, closes every connection and stops serving.
func (rt *Runtime) Close() error {
	if !rt.tornDown.CompareAndSwap(false, true) {
		return nil
	}
	rt.stopWork(func(task string) *pb.TaskError { return sysErr(task, KindSystem, ErrShutdown.Error()) })
	if rt.evStop != nil {
		close(rt.evStop) // the last batch, with the failures above, goes out before the raylet's connection closes
		<-rt.evDone
	}
	rt.goMu.Lock()
	rt.stopped = true
	rt.goMu.Unlock()
	err := rt.srv.Close()
	if rt.tcp != nil {
		_ = rt.tcp.Close()
	}
	rt.peers.close() // and refuse new ones from now on
	// What was spawned ends once its connections are closed.
	rt.gos.Wait()
	_ = os.Remove(rt.cfg.Addr)
	return err
}

// stopWork is the first half of Close, which fencing (Fence) does alone:
// it fails what is pending with fail's error, returns the leases held and
// frees the objects owned; from then on the runtime takes no new work. It
// reports false if it had been done already.
func (rt *Runtime) stopWork(fail func(task string) *pb.TaskError) bool {
	var after actions
	rt.lockAll()
	if rt.closed.Load() {
		rt.unlockAll()
		return false
	}
	rt.closed.Store(true)
	rt.bgCancel()
	for _, t := range rt.tasks.byID {
		rt.tasks.finishLocked(t, nil, fail(t.spec.Name), &after)
	}
	for _, q := range rt.tasks.queues {
		after.returned = append(after.returned, q.leases...)
		q.leases = nil
	}
	for _, a := range rt.actors.byID {
		if a.lease != nil && !a.detached { // detached actors outlive us
			after.returned = append(after.returned, a.lease)
			a.lease = nil
		}
	}
	for id, obj := range rt.objs.byID {
		if obj.owned && obj.loc != nil && obj.loc.InStore {
			after.freeAt(id, obj.loc)
		}
	}
	rt.objs.byID = make(map[ids.ObjectID]*object)
	rt.unlockAll()
	for _, f := range after.wake {
		f()
	}
	if rt.cfg.Raylet != nil {
		rt.objs.freeObjects(after.free)
		for _, l := range after.returned {
			l.raylet(rt).ReturnLease(&pb.ReturnLease{LeaseId: l.id})
		}
	}
	return true
}

// lockAll takes the actors', the tasks' and the objects' locks, in that
// order: what settling an actor's calls needs.
func (rt *Runtime) lockAll() {
	rt.actors.mu.Lock()
	rt.tasks.mu.Lock()
	rt.objs.mu.Lock()
}

func (rt *Runtime) unlockAll() {
	rt.objs.mu.Unlock()
	rt.tasks.mu.Unlock()
	rt.actors.mu.Unlock()
}

// lockTasks takes the tasks' and the objects' locks, in that order: what
// submitting or finishing a task needs.
func (rt *Runtime) lockTasks() {
	rt.tasks.mu.Lock()
	rt.objs.mu.Lock()
}

func (rt *Runtime) unlockTasks() {
	rt.objs.mu.Unlock()
	rt.tasks.mu.Unlock()
}

// lockFor takes the locks submitting or settling t needs: the actors' too
// when t is an actor's call or creation.
func (rt *Runtime) lockFor(t *task) {
	if t.actor != nil || t.create != nil {
		rt.actors.mu.Lock()
	}
	rt.lockTasks()
}

func (rt *Runtime) unlockFor(t *task) {
	rt.unlockTasks()
	if t.actor != nil || t.create != nil {
		rt.actors.mu.Unlock()
	}
}

// goroutine runs fn on a goroutine of its own that Close waits for; once
// Close has begun it runs nothing and reports false. Every goroutine core
// starts goes through here (or after); name says what it is for, and
// Goroutines counts them by it.
func (rt *Runtime) goroutine(name string, fn func()) bool {
	rt.goMu.Lock()
	defer rt.goMu.Unlock()
	if rt.stopped {
		return false
	}
	if rt.live == nil {
		rt.live = make(map[string]int)
	}
	rt.live[name]++
	rt.gos.Add(1)
	go func() {
		defer func() {
			rt.goMu.Lock()
			rt.live[name]--
			if rt.live[name] == 0 {
				delete(rt.live, name)
			}
			rt.goMu.Unlock()
			rt.gos.Done()
		}()
		fn()
	}()
	return true
}

// after runs fn on a goroutine (see goroutine) once d has passed, unless
// Close begins first.
func (rt *Runtime) after(name string, d time.Duration, fn func()) {
	rt.goroutine(name, func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			fn()
		case <-rt.bg.Done():
		}
	})
}

// Goroutines counts the goroutines the runtime runs now, by what they are
// for: none once Close has returned.
func (rt *Runtime) Goroutines() map[string]int {
	rt.goMu.Lock()
	defer rt.goMu.Unlock()
	out := make(map[string]int, len(rt.live))
	for k, v := range rt.live {
		out[k] = v
	}
	return out
}

// Calls counts the calls of Put, Get, GetMany, Wait and WaitIndexed this
// runtime has served: a driver that makes them is busy even when they
// exchange no message (a small put, the get of a ready inline value), so
// work that would slow it, such as the store's prefault window, waits
// until this count and rpc.Activity stand still.
func (rt *Runtime) Calls() uint64 { return rt.calls.Load() }

// Put stores a value this process owns. contained are the refs nested in
// it, kept alive while it lives.
func (rt *Runtime) Put(ctx context.Context, p codec.Payload, contained []*Handle) (*Handle, error) {
	rt.calls.Add(1)
	return rt.objs.put(ctx, p, contained)
}

// GetMany waits for every object, lending the worker's CPU at most once,
// and returns their locators in order.
func (rt *Runtime) GetMany(ctx context.Context, hs []*Handle) ([]*pb.Locator, error) {
	rt.calls.Add(1)
	return rt.objs.getMany(ctx, hs)
}

// Get waits for an object and returns where its value is. In a worker, a
// Get that must wait lends the worker's CPU to other tasks meanwhile.
func (rt *Runtime) Get(ctx context.Context, h *Handle) (*pb.Locator, error) {
	rt.calls.Add(1)
	return rt.objs.get(ctx, h)
}

func (rt *Runtime) block() {
	if rt.cfg.IsWorker && rt.blocked.Add(1) == 1 {
		rt.cfg.Raylet.SetBlocked(rt.cfg.WorkerID, true)
	}
}

func (rt *Runtime) unblock() {
	if rt.cfg.IsWorker && rt.blocked.Add(-1) == 0 {
		rt.cfg.Raylet.SetBlocked(rt.cfg.WorkerID, false)
	}
}

// Wait returns, in order, the indexes of hs that are ready once n of them
// are (or ctx ends), and the indexes of the rest.
//
// Rather than registering with every object, a waiting Wait sleeps on the
// runtime's completion signal and rescans, stopping at the n-th ready ref:
// a loop of Wait(refs, 1) over refs finishing in order costs O(1) a call.
func (rt *Runtime) Wait(ctx context.Context, hs []*Handle, n int) (ready, rest []int, err error) {
	rt.calls.Add(1)
	return rt.objs.wait(ctx, hs, n)
}

// WaitIndexed is Wait over count refs that at names (none nil), without
// a slice of them: it returns the indexes of the ready ones, in order.
func (rt *Runtime) WaitIndexed(ctx context.Context, count, n int, at func(int) *Handle) (ready []int, err error) {
	rt.calls.Add(1)
	return rt.objs.waitIndexed(ctx, count, n, at)
}

// Bytes returns the encoded bytes of object id, owned by the process at
// owner: inline, or mapped from the store without a copy, after pulling it
// to this node if it lives on another. An object whose only copy went with
// its node is made again from lineage: by this process if it owns it, else
// by its owner, asked to.
//
// Store bytes stay in place (not spilled, moved or reused) until release
// is called; release is never nil.
func (rt *Runtime) Bytes(ctx context.Context, id ids.ObjectID, owner string, loc *pb.Locator) (b []byte, release func(), err error) {
	if loc.Error != nil {
		return nil, noRelease, TaskErrorFrom(loc.Error)
	}
	if !loc.InStore {
		return loc.Inline, noRelease, nil
	}
	if rt.cfg.Arena == nil {
		return nil, noRelease, errors.New("core: object is in a store this process has not mapped")
	}
	for tries := 0; ; tries++ {
		var off int64
		release = noRelease
		if rt.remote(loc) {
			// The pulled copy is pinned for this process, as a local object.
			if off, err = rt.cfg.Raylet.PullObject(ctx, id, loc.NodeAddr, loc.Size); err == nil {
				release = func() { rt.cfg.Raylet.UnpinObjects([]ids.ObjectID{id}) }
			} else {
				err = fmt.Errorf("core: fetch %s from %s: %w", id, loc.NodeAddr, wrapStoreErr(err))
			}
		} else if off, err = rt.cfg.Raylet.PinObject(ctx, id); err == nil {
			release = func() { rt.cfg.Raylet.UnpinObjects([]ids.ObjectID{id}) }
		} else {
			err = fmt.Errorf("core: read %s: %w", id, wrapStoreErr(err))
		}
		if err == nil {
			if b, err = rt.cfg.Arena.View(off, loc.Size); err != nil {
				release()
				return nil, noRelease, err
			}
			return b, release, nil
		}
		if !errors.Is(err, ErrObjectLost) || tries >= maxRebuilds {
			return nil, noRelease, err
		}
		// Waiting for the object to be made again, a worker lends its CPU,
		// as in a Get: the task that makes it may need that CPU (when every
		// CPU is held by readers of lost objects, nothing else would run).
		rt.block()
		if owner == "" || owner == rt.addr {
			loc, err = rt.rebuild(ctx, id, loc)
		} else {
			loc, err = rt.askRebuild(ctx, id, owner, loc)
		}
		rt.unblock()
		if err != nil {
			return nil, noRelease, err
		}
		if loc.Error != nil {
			return nil, noRelease, TaskErrorFrom(loc.Error)
		}
		if !loc.InStore {
			return loc.Inline, noRelease, nil
		}
	}
}

func noRelease() {}

// remote reports whether a stored object lives on another node.
func (rt *Runtime) remote(loc *pb.Locator) bool {
	return loc.NodeAddr != "" && loc.NodeAddr != rt.cfg.NodeAddr
}

// Stats describes the runtime's tables, for tests and the state API.
type Stats struct {
	Objects int // records in the memory store (owned and borrowed)
	Owned   int
	Tasks   int // submitted and not finished
}

// Stats counts the runtime's tables.
func (rt *Runtime) Stats() Stats {
	rt.tasks.mu.Lock()
	s := Stats{Tasks: len(rt.tasks.byID)}
	rt.tasks.mu.Unlock()
	rt.objs.mu.Lock()
	defer rt.objs.mu.Unlock()
	s.Objects = len(rt.objs.byID)
	for _, o := range rt.objs.byID {
		if o.owned {
			s.Owned++
		}
	}
	return s
}

// StoreResult stores a task's return value and grants the task's owner a
// borrow on each nested ref this process owns, so they outlive the task.
func (rt *Runtime) StoreResult(ctx context.Context, id ids.ObjectID, r Result) (*pb.Locator, error) {
	return rt.objs.storeResult(ctx, id, r)
}
