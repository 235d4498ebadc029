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

	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/metrics"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/raylet/transfer"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
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
	spill  *spiller          // spilling, and the pins of the store's readers
	xfer   *transfer.Manager // object transfers from and to other nodes
	owners ownerTable        // the owners of the primary copies held here (handover.go)
	logMu  sync.Mutex        // serializes writes to cfg.LogOutput
	log    *slog.Logger
	logF   *os.File

	drainWG sync.WaitGroup // the drain's deadline watcher

	mu            sync.Mutex // protects the fields below
	total         map[string]float64
	avail         map[string]float64
	gpus          gpuPool // which GPUs are free
	workers       map[ids.WorkerID]*workerProc
	idle          []*workerProc
	starting      int            // workers started and not registered yet
	startingJ     map[string]int // the same, by job
	jobs          map[string]*job
	leases        map[uint64]*leaseRec
	pending       []*leaseReq
	nextLease     uint64
	closed        bool
	draining      bool // rayo drain: no new leases here
	drain         drainState
	drainingPeers []string          // the addresses of the other nodes being drained
	fenced        *fencedError      // set by Fence: the node was declared dead
	deadNodes     map[string]string // the nodes the cluster view has DEAD, by name: why (fence.go)

	peers      []*peerNode              // the other nodes, from the cluster view
	spreadNext int                      // SPREAD's round robin
	jobWait    map[string][]*leaseReq   // requests waiting for their job to load
	viewWait   []*leaseReq              // requests waiting for the next cluster view
	awaitNode  []*leaseReq              // requests waiting for a node the autoscaler can add (autoscale.go)
	launchable []map[string]float64     // the shapes of those nodes, from the cluster view
	bundles    map[bundleKey]*bundleRec // placement group bundles held here

	// local is the control store of an embedded cluster (Config.Cluster
	// nil), kept here; cfg.Cluster is then local. alone says the node is
	// the whole cluster: no other node, no cluster view to wait for.
	local *localStore
	alone bool
	mem   *memMonitor // the memory monitor (memory.go)

	gone      []*workerProc // the last workers that ended, for the state API
	creates   creators      // unsealed creates, by connection (create.go)
	sealMu    sync.Mutex    // protects sealWake
	sealWake  chan struct{} // closed (and replaced) when objects are sealed
	logWakeMu sync.Mutex    // protects logWake
	logWake   chan struct{} // closed (and replaced) when a worker's log grows
	cpuPrev   cpuSample     // the machine's CPU times at the last NodeStats; guarded by mu

	metrics    *metrics.Node // this node's Prometheus metrics
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
	// logPipe is the read end of its output and logLines counts the
	// lines taken from it, for drainLogs.
	logPipe  atomic.Pointer[logPipe]
	logLines atomic.Int64
	// tasks are where each task's lines start in its log (the worker marks
	// them in its output), the last maxTaskMarks of them; marks are where
	// each line starts and when it arrived, the last maxLogMarks of them,
	// for the tasks that give no mark of their own: their lines are those
	// that arrived while they ran.
	markMu  sync.Mutex
	tasks   []taskMark
	marks   []lineMark
	logSize int64 // bytes in its log file; guarded by markMu
	// evictedAt is when the oldest task mark kept arrived, once older ones
	// were dropped (0: none was); guarded by markMu.
	evictedAt int64
	// label is the worker's label page and capture the read end of its
	// capture pipe (see rayletclient.EnvOutput), until its output has been
	// copied; flags are the page's flags, read then. All guarded by markMu.
	label    heldFD
	capture  heldFD
	flags    byte
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
		jobs:      make(map[string]*job),
		startingJ: make(map[string]int),
		jobWait:   make(map[string][]*leaseReq),
	}
	r.cfg.NodeName = r.nodeID.Name()
	r.started = time.Now()
	r.alone = cfg.Cluster == nil
	if err := r.initResources(); err != nil {
		return nil, err
	}
	if err := r.openLog(); err != nil {
		return nil, err
	}
	if err := r.openStore(); err != nil {
		return nil, err
	}
	r.newMetrics()
	r.xfer = r.newTransfers()
	ln, err := rpc.ListenUnix(r.addr)
	if err != nil {
		_ = r.spill.close()
		_ = r.arena.Close()
		_ = r.arena.Remove()
		return nil, fmt.Errorf("raylet: listen: %w", err)
	}
	if r.alone {
		r.local = newLocalStore(r)
		r.cfg.Cluster = r.local
	}
	mux := r.newMux()
	r.srv = rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return mux }, r.connClosed)
	r.stop = make(chan struct{})
	r.drain.idle, r.drain.done = make(chan struct{}), make(chan struct{})
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
		r.tcp = rpc.NewServer(tl, func(*rpc.Conn) rpc.Handler { return mux }, r.connClosed)
		if cfg.Token != "" {
			r.tcp.RequireToken(cfg.Token)
		}
	}
	if err := r.serveMetrics(); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("raylet: %w", err)
	}
	if err := r.prestartWorkers(); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// prestartWorkers starts workers ahead of need when there is an
// executable for them (an embedded cluster's driver); a daemon gets one
// from a job.
func (r *Raylet) prestartWorkers() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < int(r.cfg.NumCPUs) && r.cfg.WorkerExe != ""; i++ {
		if err := r.startWorkerLocked(""); err != nil {
			return err
		}
	}
	return nil
}

// initResources sets the node's resources: those configured, its memory
// (unless configured) and its GPUs; and the memory monitor.
func (r *Raylet) initResources() error {
	for k, v := range r.cfg.Resources {
		r.total[k] = v
	}
	mem, err := r.newMemMonitor(r.cfg.MemoryUsageThreshold, r.cfg.MemoryMonitorInterval)
	if err != nil {
		return err
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
	return nil
}

// openLog opens the raylet's own log in the session's folder.
func (r *Raylet) openLog() error {
	lf, err := os.OpenFile(filepath.Join(r.cfg.SessionDir, "logs", "raylet.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("raylet: log: %w", err)
	}
	r.logF = lf
	// Leases and blocking are logged only with RAYO_DEBUG set: they happen
	// on every task.
	level := slog.LevelInfo
	if os.Getenv("RAYO_DEBUG") != "" {
		level = slog.LevelDebug
	}
	r.log = slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: level}))
	return nil
}

// openStore creates the node's object store and its spilling. The store
// is an anonymous memory file: workers inherit it, and the kernel frees it
// with the last process, however the driver ends.
func (r *Raylet) openStore() error {
	arena, err := objstore.CreateAnonArena("rayo-store-"+r.nodeID.String()[:8], r.cfg.StoreCapacity)
	if err != nil {
		return fmt.Errorf("raylet: object store: %w", err)
	}
	r.arena, r.store = arena, objstore.NewStore(arena)
	if r.spill, err = newSpiller(r); err != nil {
		_ = arena.Close()
		return err
	}
	r.log.Info("object store", "bytes", r.cfg.StoreCapacity, "source", r.cfg.StoreSource)
	return nil
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
	return placement.ResourceList(r.total), placement.ResourceList(r.avail), placement.ResourceList(demand)
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
	r.drainWG.Wait()
	if r.xfer != nil {
		r.xfer.Close()
	}
	if r.local != nil {
		r.local.close()
	}
	r.mu.Lock()
	pending := append(r.pending, r.awaitNode...)
	r.pending, r.awaitNode = nil, nil
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
	r.abortCreatesOf(c)
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
		} else {
			r.ownerGoneBeforeCreation(c, p.req, &after)
		}
	}
	for i := len(kept); i < len(r.pending); i++ {
		r.pending[i] = nil
	}
	r.pending = kept
	for _, l := range r.leases {
		if l.owner == c && !l.detached {
			r.ownerGoneLocked(c, l, &after)
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
	rpc.Go(w.conn, rpc.DrainWorker, &pb.Empty{}, func(b *pb.StateEvents, err error) {
		if kill.Stop() {
			if err == nil {
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
