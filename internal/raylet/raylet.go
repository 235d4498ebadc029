// Package raylet is the node manager: it keeps the node's pool of worker
// processes, grants leases on them to owners by resource shape, hosts the
// node's shared-memory object store, and collects the workers' output.
package raylet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/metrics"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Environment variables a worker process is started with.
const (
	EnvWorkerID   = "RAYO_WORKER_ID"
	EnvRaylet     = "RAYO_RAYLET"
	EnvStore      = "RAYO_STORE"
	EnvSessionDir = "RAYO_SESSION_DIR"
	EnvJob        = "RAYO_JOB"
	// In a cluster of several nodes:
	EnvListen   = "RAYO_LISTEN"    // where the worker serves other nodes (HOST:0)
	EnvToken    = "RAYO_TOKEN"     // the cluster's secret
	EnvNode     = "RAYO_NODE"      // the node's name in endpoints
	EnvNodeAddr = "RAYO_NODE_ADDR" // the raylet's TCP address
)

// CPU is the name of the CPU resource.
const CPU = "CPU"

// Config sets up a raylet.
type Config struct {
	SessionDir    string             // sockets and logs live here
	NumCPUs       float64            // CPU resource, and how many workers to start ahead of need
	Resources     map[string]float64 // custom resources
	StoreCapacity int64              // bytes of shared memory; 0 means objstore.DefaultSizing
	StoreSource   string             // where StoreCapacity comes from, for the log (a flag, an option)
	WorkerExe     string             // the executable workers run (the driver's own)
	WorkerArgs    []string
	WorkerEnv     []string
	InheritEnv    bool      // workers inherit this process's whole environment (the embedded cluster's driver); else an allow-list of it (workerenv.go)
	LogToDriver   bool      // copy worker output to LogOutput, prefixed
	LogOutput     io.Writer // where worker output goes when LogToDriver
	ListenTCP     string    // also serve other nodes here (host:port), with Token
	Token         string
	Cluster       Cluster // the control store of a cluster of several nodes; nil for one node
	NodeName      string  // set by Start: the node's name in endpoints
	EmbeddedJob   string  // alone (no Cluster): the job ID of the driver hosting the raylet
	DriverAddr    string  // alone: that driver's endpoint
	MaxTasks      int     // alone: task attempts the state table keeps (0: tasktable.DefaultMaxTasks)
	MetricsAddr   string  // serve Prometheus metrics at HOST:PORT/metrics ("": not on a port of its own)
	// SpillDir is where primary copies spill when the store passes 80%
	// ("": <SessionDir>/spill; "-": no spilling).
	SpillDir string
	// SpillThreshold is the fraction of the spill folder's file system
	// past which nothing more spills (0: 0.95).
	SpillThreshold float64
	// MemoryUsageThreshold is the fraction of the node's memory past which
	// the memory monitor kills a worker (0: RAYO_MEMORY_USAGE_THRESHOLD, or
	// DefaultMemoryUsageThreshold); MemoryMonitorInterval is how often it
	// samples (0: DefaultMemoryMonitorInterval; negative: never).
	MemoryUsageThreshold  float64
	MemoryMonitorInterval time.Duration
}

// Raylet manages one node.
type Raylet struct {
	cfg    Config
	nodeID ids.NodeID
	addr   string
	srv    *rpc.Server
	tcp    *rpc.Server // for other nodes, when ListenTCP is set
	arena  *objstore.Arena
	store  *objstore.Store
	spill  *spiller   // spilling, and the pins of the store's readers
	names  *gcs.Names // named actors (the control store's table, hosted here)
	logMu  sync.Mutex // serializes writes to cfg.LogOutput
	log    *slog.Logger
	logF   *os.File

	mu        sync.Mutex // protects the fields below
	total     map[string]float64
	avail     map[string]float64
	gpus      gpuPool // which GPUs are free
	workers   map[ids.WorkerID]*workerProc
	idle      []*workerProc
	starting  int            // workers started and not registered yet
	startingJ map[string]int // the same, by job
	jobs      map[string]*job
	leases    map[uint64]*leaseRec
	pending   []*leaseReq
	nextLease uint64
	closed    bool

	peers      []*peerNode              // the other nodes, from the cluster view
	spreadNext int                      // SPREAD's round robin
	jobWait    map[string][]*leaseReq   // requests waiting for their job to load
	viewWait   []*leaseReq              // requests waiting for the next cluster view
	bundles    map[bundleKey]*bundleRec // placement group bundles held here

	groups *placement.Manager // the placement groups, when alone (no Cluster)
	mem    *memMonitor        // the memory monitor (memory.go)

	gone     []*workerProc // the last workers that ended, for the state API
	sealMu   sync.Mutex    // protects sealWake
	sealWake chan struct{} // closed (and replaced) when objects are sealed
	logMu2   sync.Mutex    // protects logWake
	logWake  chan struct{} // closed (and replaced) when a worker's log grows
	cpuPrev  cpuSample     // the machine's CPU times at the last NodeStats; guarded by mu

	table      *tasktable.Table // tasks and actors, when alone (no Cluster)
	metrics    *metrics.Node    // this node's Prometheus metrics
	metricsSrv *metrics.Server
	started    time.Time

	procs sync.WaitGroup  // worker processes, their log readers, the reaper
	stop  chan struct{}   // closed by Close
	ctx   context.Context // cancelled by Close: the base of its own requests' contexts
	done  context.CancelFunc
}

type workerProc struct {
	job    string // whose executable it runs ("" = the node's own)
	id     ids.WorkerID
	pid    int
	addr   string
	conn   *rpc.Conn
	proc   *os.Process
	lease  *leaseRec
	dead   bool
	exited chan struct{}
	// logPipe is the read end of its output (an *os.File) and logLines
	// counts the lines taken from it, for drainLogs.
	logPipe  atomic.Value
	logLines atomic.Int64
	// marks are where each line of its log starts and when it arrived,
	// the last maxLogMarks of them: a task's lines are those that arrived
	// while it ran.
	markMu   sync.Mutex
	marks    []lineMark
	logSize  int64 // bytes in its log file; guarded by markMu
	started  time.Time
	ended    time.Time // when it was found gone; guarded by Raylet.mu
	exitCode int       // -1 until its process is reaped; guarded by Raylet.mu
	// idleSince is when the worker last became idle; workers beyond the
	// pool's size are stopped after idleTimeout.
	idleSince time.Time
}

// idleTimeout is how long a worker beyond the pool's size (one started
// while others were blocked) may stay idle before it is stopped.
const idleTimeout = 2 * time.Second

type leaseRec struct {
	id        uint64
	dedicated bool   // hosts an actor: the worker is not reused
	detached  bool   // hosts a detached actor: it outlives its job
	actorID   []byte // the actor, when dedicated
	w         *workerProc
	res       []*pb.Resource
	gpus      []int32   // the GPUs it holds...
	gpuShare  float64   // ...and how much of each
	lent      bool      // the worker is blocked in Get and lent its CPU
	owner     *rpc.Conn // nil for the in-process owner
	// For the memory monitor: when it was granted, to whom, and whether
	// its owner retries its tasks.
	granted   time.Time
	ownerAddr string
	retriable bool
	taskName  string
}

type leaseReq struct {
	job   string
	req   *pb.RequestLease
	res   []*pb.Resource
	owner *rpc.Conn
	cb    func(*pb.LeaseReply, error)
	at    time.Time // when it arrived, for the scheduling latency
}

// ErrClosed is returned by a raylet that has shut down.
var ErrClosed = errors.New("raylet: closed")

// Start creates the store, listens on the session's raylet socket and
// starts NumCPUs workers.
func Start(cfg Config) (*Raylet, error) {
	if cfg.NumCPUs <= 0 {
		return nil, fmt.Errorf("raylet: NumCPUs must be positive, got %g", cfg.NumCPUs)
	}
	if cfg.StoreCapacity <= 0 {
		cfg.StoreCapacity, cfg.StoreSource = objstore.DefaultSizing()
	} else if cfg.StoreSource == "" {
		cfg.StoreSource = "configured"
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stdout
	}
	if err := os.MkdirAll(filepath.Join(cfg.SessionDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("raylet: session dir: %w", err)
	}
	r := &Raylet{
		cfg:       cfg,
		nodeID:    ids.NewNodeID(),
		addr:      filepath.Join(cfg.SessionDir, "raylet.sock"),
		total:     map[string]float64{CPU: cfg.NumCPUs},
		workers:   make(map[ids.WorkerID]*workerProc),
		leases:    make(map[uint64]*leaseRec),
		names:     gcs.NewNames(),
		jobs:      make(map[string]*job),
		startingJ: make(map[string]int),
		jobWait:   make(map[string][]*leaseReq),
	}
	r.cfg.NodeName = r.nodeID.Name()
	r.started = time.Now()
	if cfg.Cluster == nil {
		r.table = tasktable.NewTable(cfg.MaxTasks, 0)
	}
	for k, v := range cfg.Resources {
		r.total[k] = v
	}
	mem, err := r.newMemMonitor(cfg.MemoryUsageThreshold, cfg.MemoryMonitorInterval)
	if err != nil {
		return nil, err
	}
	r.mem = mem
	if _, ok := r.total[MemoryResource]; !ok {
		if m, err := hostres.ReadMemory(); err == nil {
			r.total[MemoryResource] = float64(m.Total)
		}
		if t := mem.fakeTotal; t > 0 {
			r.total[MemoryResource] = float64(t)
		}
	}
	r.avail = make(map[string]float64, len(r.total))
	for k, v := range r.total {
		r.avail[k] = v
	}
	r.gpus = newGPUPool(r.total[GPU])
	lf, err := os.OpenFile(filepath.Join(cfg.SessionDir, "logs", "raylet.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("raylet: log: %w", err)
	}
	r.logF = lf
	// Leases and blocking are logged only with RAYO_DEBUG set: they happen
	// on every task.
	level := slog.LevelInfo
	if os.Getenv("RAYO_DEBUG") != "" {
		level = slog.LevelDebug
	}
	r.log = slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: level}))
	// An anonymous memory file: workers inherit it, and the kernel frees it
	// with the last process, however the driver ends.
	arena, err := objstore.CreateAnonArena("rayo-store-"+r.nodeID.String()[:8], cfg.StoreCapacity)
	if err != nil {
		return nil, fmt.Errorf("raylet: object store: %w", err)
	}
	r.arena, r.store = arena, objstore.NewStore(arena)
	if r.spill, err = newSpiller(r); err != nil {
		_ = arena.Close()
		return nil, err
	}
	r.log.Info("object store", "bytes", cfg.StoreCapacity, "source", cfg.StoreSource)
	r.newMetrics()
	ln, err := rpc.ListenUnix(r.addr)
	if err != nil {
		_ = r.spill.close()
		_ = arena.Close()
		_ = arena.Remove()
		return nil, fmt.Errorf("raylet: listen: %w", err)
	}
	r.srv = rpc.NewServer(ln, func(c *rpc.Conn) rpc.Handler { return rpc.HandlerFunc(r.handle) }, r.connClosed)
	r.stop = make(chan struct{})
	r.ctx, r.done = context.WithCancel(context.Background())
	r.procs.Add(2)
	go r.reapIdle()
	go r.memoryMonitor()
	if cfg.ListenTCP != "" {
		tl, err := net.Listen("tcp", cfg.ListenTCP)
		if err != nil {
			_ = r.Close()
			return nil, fmt.Errorf("raylet: listen %s: %w", cfg.ListenTCP, err)
		}
		r.tcp = rpc.NewServer(tl, func(c *rpc.Conn) rpc.Handler { return rpc.HandlerFunc(r.handle) }, r.connClosed)
		if cfg.Token != "" {
			r.tcp.RequireToken(cfg.Token)
		}
	}
	if err := r.serveMetrics(); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("raylet: %w", err)
	}
	if cfg.Cluster == nil {
		r.groups = placement.NewManager(localGroups{r}, r.log, nil)
	}
	r.mu.Lock()
	// Workers are started ahead of need when there is an executable for
	// them (an embedded cluster's driver); a daemon gets one from a job.
	for i := 0; i < int(cfg.NumCPUs) && cfg.WorkerExe != ""; i++ {
		if err := r.startWorkerLocked(""); err != nil {
			r.mu.Unlock()
			_ = r.Close()
			return nil, err
		}
	}
	r.mu.Unlock()
	return r, nil
}

// Addr is the raylet's socket.
func (r *Raylet) Addr() string { return r.addr }

// TCPAddr is where other nodes reach the raylet ("" unless ListenTCP).
func (r *Raylet) TCPAddr() string {
	if r.tcp == nil {
		return ""
	}
	return r.tcp.Addr().String()
}

// Resources lists the node's total and currently available resources,
// and the sum of what waiting lease requests ask for.
func (r *Raylet) Resources() (total, avail, pending []*pb.Resource) {
	r.mu.Lock()
	defer r.mu.Unlock()
	demand := map[string]float64{}
	for _, p := range r.pending {
		for _, x := range p.res {
			demand[x.Name] += x.Quantity
		}
	}
	return resourceList(r.total), resourceList(r.avail), resourceList(demand)
}

func resourceList(m map[string]float64) []*pb.Resource {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]*pb.Resource, len(names))
	for i, k := range names {
		out[i] = &pb.Resource{Name: k, Quantity: m[k]}
	}
	return out
}

// NodeName is the node's name in endpoints.
func (r *Raylet) NodeName() string { return r.cfg.NodeName }

// NodeID identifies the node.
func (r *Raylet) NodeID() ids.NodeID { return r.nodeID }

// Arena is the node's shared-memory mapping in this process.
func (r *Raylet) Arena() *objstore.Arena { return r.arena }

// StoreStats describes the object store.
func (r *Raylet) StoreStats() objstore.Stats { return r.store.Stats() }

// WorkerPIDs lists the live worker processes.
func (r *Raylet) WorkerPIDs() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pids []int
	for _, w := range r.workers {
		if !w.dead {
			pids = append(pids, w.pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// Close stops every worker, waits for them, and removes the store and the
// socket.
func (r *Raylet) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.stop)
	r.done()
	r.mu.Unlock()
	if r.groups != nil {
		r.groups.Close()
	}
	r.mu.Lock()
	pending := r.pending
	r.pending = nil
	var procs []*workerProc
	for _, w := range r.workers {
		procs = append(procs, w)
	}
	r.mu.Unlock()
	for _, p := range pending {
		p.cb(nil, ErrClosed)
	}
	// Closing the connections makes workers exit by themselves; those that
	// do not (or have not connected yet) are killed.
	err := r.srv.Close()
	if r.tcp != nil {
		_ = r.tcp.Close()
	}
	for _, w := range procs {
		if w.proc != nil {
			_ = w.proc.Kill()
		}
	}
	r.procs.Wait()
	if r.metricsSrv != nil {
		_ = r.metricsSrv.Close()
	}
	// Workers remove their sockets when they exit cleanly; killed ones cannot.
	socks, _ := filepath.Glob(filepath.Join(r.cfg.SessionDir, "w-*.sock"))
	for _, s := range socks {
		_ = os.Remove(s)
	}
	if serr := r.spill.close(); err == nil {
		err = serr
	}
	_ = r.arena.Close()
	_ = r.arena.Remove()
	_ = os.Remove(r.addr)
	_ = r.logF.Close()
	return err
}

func (r *Raylet) handle(c *rpc.Conn, m rpc.Method, kind rpc.Kind, id uint64, body []byte) {
	if m == rpc.MReportEvents {
		b := &pb.StateEvents{}
		if unmarshal(body, b) == nil {
			r.ReportEvents(b)
		}
		return
	}
	if kind == rpc.KindRequest && (r.serveState(c, m, id, body) || r.serveStats(c, m, id, body)) {
		return
	}
	switch m {
	case rpc.MRegisterWorker:
		req := &pb.RegisterWorker{}
		if err := unmarshal(body, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		if err := r.register(c, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		_ = c.Reply(id, &pb.RegisterWorkerReply{NodeId: r.nodeID[:], StorePath: r.arena.Path(), SessionDir: r.cfg.SessionDir})
	case rpc.MRequestLease:
		req := &pb.RequestLease{}
		if err := unmarshal(body, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		r.requestLease(req, c, func(lr *pb.LeaseReply, err error) {
			if err != nil {
				_ = c.ReplyError(id, err.Error())
				return
			}
			_ = c.Reply(id, lr)
		})
	case rpc.MReturnLease:
		req := &pb.ReturnLease{}
		if unmarshal(body, req) == nil {
			r.ReturnLease(req)
		}
	case rpc.MBlocked:
		req := &pb.BlockedChange{}
		if unmarshal(body, req) == nil {
			if wid, err := ids.WorkerIDFrom(req.WorkerId); err == nil {
				r.SetBlocked(wid, req.Blocked)
			}
		}
	case rpc.MCreateObject:
		r.serveCreate(c, id, body)
	case rpc.MPinObject:
		r.servePin(c, id, body)
	case rpc.MUnpinObjects:
		req := &pb.ObjectIDs{}
		if unmarshal(body, req) == nil {
			r.spill.unpin(c, objectIDs(req))
		}
	case rpc.MActorAlive:
		req := &pb.ActorName{}
		if unmarshal(body, req) == nil {
			r.ActorAlive(req.ActorId, req.WorkerAddr)
		}
	case rpc.MJobDone:
		// The driver is about to leave: pass on its workers' last output
		// first, off the read loop.
		j, _ := c.Value.(*job)
		go func() {
			if j != nil {
				r.drainLogs(j.id)
			}
			_ = c.Reply(id, &pb.Empty{})
		}()
	case rpc.MRegisterJob:
		req := &pb.JobInfo{}
		if err := unmarshal(body, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		if err := r.registerJob(c, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		_ = c.Reply(id, &pb.Status{})
	case rpc.MPlacementGroup:
		r.servePlacementGroup(c, id, body)
	case rpc.MPullObject:
		r.servePull(c, id, body)
	case rpc.MReadChunk:
		r.serveReadChunk(c, id, body)
	case rpc.MRegisterActorName, rpc.MLookupActorName:
		req := &pb.ActorName{}
		if err := unmarshal(body, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		serve := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var reply *pb.ActorNameReply
			if m == rpc.MRegisterActorName {
				reply = nameReply(req, r.RegisterActorName(ctx, req))
			} else {
				reply = nameReply(r.LookupActorName(ctx, req.Namespace, req.Name))
			}
			_ = c.Reply(id, reply)
		}
		if r.cfg.Cluster == nil {
			serve()
			return
		}
		r.procs.Add(1) // the control store is another process: not on the read loop
		go func() {
			defer r.procs.Done()
			serve()
		}()
	case rpc.MSealObjects, rpc.MFreeObjects:
		req := &pb.ObjectIDs{}
		if unmarshal(body, req) != nil {
			return
		}
		list := objectIDs(req)
		if m == rpc.MSealObjects {
			r.SealObjects(list)
		} else {
			r.FreeObjects(list)
		}
	default:
		if kind == rpc.KindRequest {
			_ = c.ReplyError(id, fmt.Sprintf("raylet: unknown method %d", m))
		}
	}
}

func (r *Raylet) register(c *rpc.Conn, req *pb.RegisterWorker) error {
	wid, err := ids.WorkerIDFrom(req.WorkerId)
	if err != nil {
		return err
	}
	var after []func()
	r.mu.Lock()
	w := r.workers[wid]
	if w == nil || w.dead {
		r.mu.Unlock()
		return fmt.Errorf("raylet: unknown worker %s", wid)
	}
	w.addr, w.conn = req.Addr, c
	r.log.Info("worker registered", "pid", w.pid)
	c.Value = w
	r.starting--
	r.startingJ[w.job]--
	w.idleSince = time.Now()
	r.idle = append(r.idle, w)
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
	return nil
}

// connClosed handles a worker (or a remote owner) going away.
func (r *Raylet) connClosed(c *rpc.Conn, _ error) {
	r.spill.connGone(c)
	var after []func()
	r.mu.Lock()
	switch v := c.Value.(type) {
	case *workerProc:
		r.workerGoneLocked(v)
	case *job:
		r.endJobLocked(v)
	}
	// Requests and leases this connection's process made as an owner go.
	kept := r.pending[:0]
	for _, p := range r.pending {
		if p.owner != c {
			kept = append(kept, p)
		}
	}
	for i := len(kept); i < len(r.pending); i++ {
		r.pending[i] = nil
	}
	r.pending = kept
	for _, l := range r.leases {
		if l.owner == c && !l.detached {
			r.returnLocked(l, false)
		}
	}
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
}

func (r *Raylet) workerGoneLocked(w *workerProc) {
	if r.forgetWorkerLocked(w) && w.proc != nil {
		_ = w.proc.Kill()
	}
}

// drainTimeout bounds how long a worker stopped at the end of its job
// has to hand over the events it has not reported yet.
const drainTimeout = time.Second

// stopWorkerLocked ends a worker whose job ended: it is forgotten at
// once, and killed once it has handed over the events (and the tally of
// task runs) it has not reported yet, so none of them is lost with it.
func (r *Raylet) stopWorkerLocked(w *workerProc) {
	if !r.forgetWorkerLocked(w) || w.proc == nil {
		return
	}
	if w.conn == nil {
		_ = w.proc.Kill()
		return
	}
	proc := w.proc
	kill := time.AfterFunc(drainTimeout, func() { _ = proc.Kill() })
	w.conn.Go(rpc.MDrainWorker, &pb.Empty{}, func(body []byte, err error) {
		if kill.Stop() {
			if b := new(pb.StateEvents); err == nil && unmarshal(body, b) == nil {
				r.ReportEvents(b)
			}
			_ = proc.Kill()
		}
	})
}

// forgetWorkerLocked drops a worker from the pool and releases its lease;
// it reports false if the worker was gone already.
func (r *Raylet) forgetWorkerLocked(w *workerProc) bool {
	if w.dead {
		return false
	}
	w.dead = true
	w.ended = time.Now()
	r.gone = append(r.gone, w)
	if len(r.gone) > maxGoneWorkers {
		r.gone = r.gone[len(r.gone)-maxGoneWorkers:]
	}
	r.log.Info("worker gone", "pid", w.pid, "leased", w.lease != nil)
	if w.conn == nil {
		r.starting-- // it never registered
		r.startingJ[w.job]--
	}
	delete(r.workers, w.id)
	for i, x := range r.idle {
		if x == w {
			r.idle = append(r.idle[:i], r.idle[i+1:]...)
			break
		}
	}
	if l := w.lease; l != nil {
		r.releaseLocked(l)
	}
	return true
}

func run(fs []func()) {
	for _, f := range fs {
		f()
	}
}

// RequestLease asks for a worker; cb runs when one is granted or the
// request can never be.
func (r *Raylet) RequestLease(req *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
	r.requestLease(req, nil, cb)
}

func (r *Raylet) requestLease(req *pb.RequestLease, owner *rpc.Conn, cb func(*pb.LeaseReply, error)) {
	r.placeRequest(req, owner, cb, false)
}

func (r *Raylet) placeRequest(req *pb.RequestLease, owner *rpc.Conn, cb func(*pb.LeaseReply, error), final bool) {
	var after []func()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cb(nil, ErrClosed)
		return
	}
	spill, fail := r.placeLocked(req, final)
	switch fail {
	case errWaitView:
		r.viewWait = append(r.viewWait, &leaseReq{req: req, owner: owner, cb: cb})
		r.mu.Unlock()
		return
	case errGroupMissing:
		r.mu.Unlock()
		cb(&pb.LeaseReply{GroupMissing: true}, nil)
		return
	}
	if fail != "" || spill != "" {
		r.mu.Unlock()
		cb(&pb.LeaseReply{Error: fail, SpillTo: spill}, nil)
		return
	}
	lr := &leaseReq{job: req.JobId, req: req, res: req.Resources, owner: owner, cb: cb, at: time.Now()}
	if req.JobId != "" && r.jobs[req.JobId] == nil {
		if r.cfg.Cluster == nil {
			r.mu.Unlock()
			cb(nil, fmt.Errorf("raylet: unknown job %q", req.JobId))
			return
		}
		r.loadJobLocked(req.JobId, lr) // a job of a driver on another node
		r.mu.Unlock()
		return
	}
	r.pending = append(r.pending, lr)
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
}

func describe(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%g", k, v))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

func (r *Raylet) fitsLocked(res []*pb.Resource) bool {
	for _, x := range res {
		if r.avail[x.Name] < x.Quantity-1e-9 {
			return false
		}
	}
	return true
}

// grantLocked grants waiting requests, in order, while resources and idle
// workers allow, and starts workers for those that have resources but no
// worker yet.
func (r *Raylet) grantLocked(after *[]func()) {
	if r.closed {
		return
	}
	waiting, waitingJob := 0, ""
	for len(r.pending) > 0 {
		req := r.pending[0]
		if req.owner != nil && req.owner.Err() != nil {
			r.pending = r.pending[1:] // its owner is gone
			continue
		}
		if !r.fitsLocked(req.res) {
			break
		}
		i := r.idleForLocked(req.job)
		if i < 0 {
			waitingJob = req.job
			for _, p := range r.pending {
				if p.job == waitingJob {
					waiting++
				}
			}
			break
		}
		gpus, share, ok := r.gpus.take(gpuDemand(req.res))
		if !ok {
			break // enough GPU in all, but shares of it spread over GPUs: wait for some to free
		}
		w := r.idle[i]
		r.idle = append(r.idle[:i], r.idle[i+1:]...)
		r.pending = r.pending[1:]
		for _, x := range req.res {
			r.avail[x.Name] -= x.Quantity
		}
		r.nextLease++
		l := &leaseRec{id: r.nextLease, w: w, res: req.res, owner: req.owner, dedicated: req.req.Dedicated, detached: req.req.Detached, actorID: req.req.ActorId,
			gpus: gpus, gpuShare: share, granted: time.Now(), ownerAddr: req.req.OwnerAddr, retriable: req.req.Retriable, taskName: req.req.TaskName}
		w.lease = l
		r.leases[l.id] = l
		r.log.Debug("lease granted", "lease", l.id, "pid", w.pid, "remote_owner", req.owner != nil, "avail", r.avail[CPU])
		reply := &pb.LeaseReply{LeaseId: l.id, WorkerId: w.id[:], WorkerAddr: w.addr, NodeId: r.nodeID[:], GpuIds: gpus}
		if !req.at.IsZero() {
			r.metrics.SchedulingLatency.Observe(time.Since(req.at).Seconds())
		}
		cb := req.cb
		*after = append(*after, func() { cb(reply, nil) })
	}
	// Keep the pool full when actors take workers out of it.
	for r.cfg.WorkerExe != "" && r.countIdleLocked("")+r.startingJ[""] < int(r.cfg.NumCPUs) && r.dedicatedLocked() > 0 {
		if err := r.startWorkerLocked(""); err != nil {
			break
		}
	}
	// Start workers for requests that have resources but no idle worker,
	// bounded by what could run at once.
	for r.startingJ[waitingJob] < waiting && r.starting < int(r.cfg.NumCPUs)+4 {
		if err := r.startWorkerLocked(waitingJob); err != nil {
			r.log.Error("cannot start a worker", "job", waitingJob, "err", err)
			if r.startingJ[waitingJob] == 0 && r.idleForLocked(waitingJob) < 0 {
				// Nothing will come to serve the job's requests: say so
				// rather than leave them hanging.
				kept := r.pending[:0]
				for _, p := range r.pending {
					if p.job != waitingJob {
						kept = append(kept, p)
						continue
					}
					cb, msg := p.cb, "cannot start a worker process: "+err.Error()
					*after = append(*after, func() { cb(&pb.LeaseReply{Failure: msg}, nil) })
				}
				r.pending = kept
			}
			break
		}
	}
}

// idleForLocked finds the most recently idle worker of job, or -1.
func (r *Raylet) idleForLocked(job string) int {
	for i := len(r.idle) - 1; i >= 0; i-- {
		if r.idle[i].job == job {
			return i
		}
	}
	return -1
}

func (r *Raylet) countIdleLocked(job string) int {
	n := 0
	for _, w := range r.idle {
		if w.job == job {
			n++
		}
	}
	return n
}

// ReturnLease gives a worker back.
func (r *Raylet) ReturnLease(req *pb.ReturnLease) {
	var after []func()
	r.mu.Lock()
	if l := r.leases[req.LeaseId]; l != nil {
		r.returnLocked(l, req.WorkerFailed)
	}
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
}

func (r *Raylet) dedicatedLocked() int {
	n := 0
	for _, l := range r.leases {
		if l.dedicated {
			n++
		}
	}
	return n
}

func (r *Raylet) releaseLocked(l *leaseRec) {
	if l.dedicated {
		r.names.Remove(l.actorID) // the actor is gone with its worker
		if r.cfg.Cluster != nil {
			r.cfg.Cluster.ActorGone(l.actorID)
		}
	}
	r.log.Debug("lease released", "lease", l.id, "pid", l.w.pid, "lent", l.lent)
	delete(r.leases, l.id)
	l.w.lease = nil
	r.gpus.give(l.gpus, l.gpuShare)
	l.gpus = nil
	for _, x := range l.res {
		if l.lent && x.Name == CPU {
			continue // already given back while the worker was blocked
		}
		if _, ok := r.total[x.Name]; !ok {
			continue // its placement group was removed
		}
		r.avail[x.Name] += x.Quantity
	}
}

func (r *Raylet) returnLocked(l *leaseRec, failed bool) {
	r.releaseLocked(l)
	w := l.w
	if w.dead {
		return
	}
	if failed || l.dedicated {
		r.workerGoneLocked(w) // the owner could not reach it
		return
	}
	w.idleSince = time.Now()
	r.idle = append(r.idle, w)
}

// SetBlocked lends a blocked worker's CPU to other tasks, or takes it back.
func (r *Raylet) SetBlocked(wid ids.WorkerID, blocked bool) {
	var after []func()
	r.mu.Lock()
	w := r.workers[wid]
	if w != nil && w.lease != nil && w.lease.lent != blocked {
		l := w.lease
		l.lent = blocked
		r.log.Debug("blocked", "pid", w.pid, "blocked", blocked, "lease", l.id)
		for _, x := range l.res {
			if x.Name != CPU {
				continue
			}
			if blocked {
				r.avail[CPU] += x.Quantity
			} else {
				r.avail[CPU] -= x.Quantity // may go below zero for a while
			}
		}
		r.grantLocked(&after)
	}
	r.mu.Unlock()
	run(after)
}

// CreateObject reserves space in the store, waiting up to ctx while
// spilling makes room.
func (r *Raylet) CreateObject(ctx context.Context, id ids.ObjectID, size int64) (int64, error) {
	return r.spill.create(ctx, id, size)
}

// PullObject copies an object from another node into this node's store
// and pins the copy for this process (the raylet's host) until
// UnpinObjects.
func (r *Raylet) PullObject(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	return r.pullPinned(ctx, nil, id, from, size)
}

// SealObjects makes created objects readable.
func (r *Raylet) SealObjects(list []ids.ObjectID) {
	for _, id := range list {
		_ = r.store.Seal(id)
	}
	if len(list) > 0 {
		r.spill.sealed(list)
	}
	r.sealMu.Lock()
	if r.sealWake != nil {
		close(r.sealWake)
		r.sealWake = nil
	}
	r.sealMu.Unlock()
}

// sealed is closed at the next seal of any object.
func (r *Raylet) sealed() <-chan struct{} {
	r.sealMu.Lock()
	defer r.sealMu.Unlock()
	if r.sealWake == nil {
		r.sealWake = make(chan struct{})
	}
	return r.sealWake
}

// sealWait bounds how long a read waits for an object being sealed: the
// seal was sent before the object's location left its owner.
const sealWait = 10 * time.Second

// waitSealed waits until id is sealed here, and reports whether it is.
func (r *Raylet) waitSealed(id ids.ObjectID) bool {
	deadline := time.NewTimer(sealWait)
	defer deadline.Stop()
	for {
		wake := r.sealed() // before looking: a seal after the look wakes us
		if !r.store.Unsealed(id) {
			_, _, ok := r.store.Lookup(id)
			return ok
		}
		select {
		case <-wake:
		case <-deadline.C:
			return false
		case <-r.stop:
			return false
		}
	}
}

// FreeObjects deletes objects from the store.
func (r *Raylet) FreeObjects(list []ids.ObjectID) {
	r.spill.freed(list)
	for _, id := range list {
		_, _ = r.store.Delete(id)
	}
	r.forwardFree(list) // and the copies other nodes pulled
}

// objectIDs is a list of object IDs as received, malformed ones left out.
func objectIDs(req *pb.ObjectIDs) []ids.ObjectID {
	list := make([]ids.ObjectID, 0, len(req.Ids))
	for _, b := range req.Ids {
		if oid, err := ids.ObjectIDFrom(b); err == nil {
			list = append(list, oid)
		}
	}
	return list
}

func unmarshal(b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: %v", rpc.ErrCorrupt, err)
	}
	return nil
}

// DebugString describes the raylet's scheduling state.
func (r *Raylet) DebugString() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "avail=%v total=%v pending=%d idle=%d starting=%d workers=%d leases=%d\n", r.avail, r.total, len(r.pending), len(r.idle), r.starting, len(r.workers), len(r.leases))
	for _, l := range r.leases {
		fmt.Fprintf(&b, "  lease %d pid=%d lent=%v owner=%v\n", l.id, l.w.pid, l.lent, l.owner != nil)
	}
	return b.String()
}

// reapIdle stops idle workers beyond the pool's size once they have been
// idle for idleTimeout, so bursts of nested work do not leave processes.
func (r *Raylet) reapIdle() {
	defer r.procs.Done()
	t := time.NewTicker(idleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.mu.Lock()
			// The oldest idle workers sit at the front of the stack.
			for len(r.idle) > int(r.cfg.NumCPUs) && now.Sub(r.idle[0].idleSince) > idleTimeout {
				r.workerGoneLocked(r.idle[0])
			}
			r.mu.Unlock()
		}
	}
}

func nameReply(a *pb.ActorName, err error) *pb.ActorNameReply {
	if err != nil {
		return &pb.ActorNameReply{Error: err.Error()}
	}
	return &pb.ActorNameReply{Actor: a}
}

// RegisterActorName names an actor in the control store.
func (r *Raylet) RegisterActorName(ctx context.Context, a *pb.ActorName) error {
	if r.cfg.Cluster != nil {
		return r.cfg.Cluster.RegisterActorName(ctx, a)
	}
	return r.names.Register(a)
}

// LookupActorName finds a named actor in the control store.
func (r *Raylet) LookupActorName(ctx context.Context, namespace, name string) (*pb.ActorName, error) {
	if r.cfg.Cluster != nil {
		return r.cfg.Cluster.LookupActorName(ctx, namespace, name)
	}
	return r.names.Lookup(namespace, name)
}

// job is a driver's program whose workers this node runs.
type job struct {
	id     string
	exe    string
	args   []string
	env    []string
	conn   *rpc.Conn // to the driver
	logs   bool      // send worker output to the driver
	remote bool      // its driver runs on another node
	pid    int       // its driver's process, when it runs on this node
	start  time.Time
}

// RegisterJob lets a driver on this node run its workers here.
func (r *Raylet) registerJob(c *rpc.Conn, info *pb.JobInfo) error {
	if info.JobId == "" || info.Exe == "" {
		return errors.New("raylet: a job needs an ID and an executable")
	}
	if _, err := os.Stat(info.Exe); err != nil {
		return fmt.Errorf("raylet: job executable: %w", err)
	}
	if r.cfg.Cluster != nil {
		// Other nodes run the job's workers too: they fetch its executable
		// from the control store.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		info.NodeId = r.nodeID[:]
		err := r.cfg.Cluster.StartJob(ctx, info)
		cancel()
		if err != nil {
			return fmt.Errorf("raylet: start job: %w", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs[info.JobId] != nil {
		return fmt.Errorf("raylet: job %q exists", info.JobId)
	}
	j := &job{id: info.JobId, exe: info.Exe, args: info.Args, env: info.Env, conn: c, logs: info.LogToDriver,
		pid: c.PeerPID(), start: time.Now()}
	r.jobs[j.id] = j
	c.Value = j
	r.log.Info("job started", "job", j.id, "exe", j.exe)
	return nil
}

// endJobLocked stops the workers of a job whose driver has gone.
func (r *Raylet) endJobLocked(j *job) {
	delete(r.jobs, j.id)
	if j.remote && j.conn != nil {
		_ = j.conn.Close()
	}
	if !j.remote && r.cfg.Cluster != nil {
		r.cfg.Cluster.EndJob(j.id)
	}
	for _, w := range r.workers {
		if w.job == j.id && (w.lease == nil || !w.lease.detached) {
			r.stopWorkerLocked(w)
		}
	}
	r.log.Info("job ended", "job", j.id)
}

// ActorAlive records where a detached actor runs.
func (r *Raylet) ActorAlive(actorID []byte, workerAddr string) {
	if r.cfg.Cluster != nil {
		r.cfg.Cluster.ActorAlive(actorID, workerAddr)
		return
	}
	r.names.SetWorker(actorID, workerAddr)
}
