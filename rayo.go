package rayo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/dashboard"
	"github.com/rayo-dev/rayo/internal/dashboard/web"
	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
	"github.com/rayo-dev/rayo/internal/worker"
)

// cluster is the cluster this process belongs to, embedded or joined, and
// the runtime it reaches it with; rt is nil outside Init ... Shutdown.
var cluster struct {
	sync.Mutex // protects the fields below
	rt         *core.Runtime
	raylet     *raylet.Raylet  // embedded cluster
	conn       *rpc.Conn       // joined cluster: to the node's raylet
	arena      *objstore.Arena // joined cluster: the node's store
	session    string
	node       string // this node's ID
	gcsAddr    string // joined cluster: the control store, and its token
	token      string
	dash       *dashboard.HTTPServer // embedded cluster: the API server
	dashSrc    *dashboard.RPCSource
	headDash   string // joined cluster: the head's API server, if known
}

func current() *core.Runtime {
	cluster.Lock()
	defer cluster.Unlock()
	return cluster.rt
}

// IsWorker reports whether this process was started by rayo as a worker.
func IsWorker() bool { return worker.IsWorker() }

// ServeWorker turns this process into a worker if rayo started it as one:
// it then serves tasks and never returns. In any other process it returns
// at once. Init calls it; call it yourself first thing in TestMain, or
// wherever code before Init must not run in workers.
func ServeWorker() {
	if !worker.IsWorker() {
		return
	}
	core.Freeze()
	_, err := worker.Start(func(rt *core.Runtime) {
		cluster.Lock()
		cluster.rt = rt
		cluster.Unlock()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rayo worker:", err)
		os.Exit(2)
	}
	select {} // tasks run on the worker's own goroutines until the raylet goes
}

// Init starts rayo. With no Address (and no RAYO_ADDRESS) it starts an
// embedded cluster inside this process: the control store, a raylet with
// its shared-memory object store, and a pool of worker processes, which
// run this same executable. In a worker process Init serves tasks and never
// returns.
//
// Remote functions must be declared (at package level) before Init.
func Init(opts ...Option) error {
	ServeWorker()
	o := defaultOptions()
	o.numCPUs = float64(hostres.CPUs()) // the affinity mask and the cgroup's quota honoured
	o.apply(forInit, opts)
	if o.optErr != nil {
		return o.optErr
	}
	if o.address == "" {
		o.address = os.Getenv("RAYO_ADDRESS")
	}
	cluster.Lock()
	defer cluster.Unlock()
	if cluster.rt != nil {
		return ErrAlreadyInitialized
	}
	core.Freeze()
	if o.address != "" {
		return joinCluster(o)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rayo: cannot find this executable for workers: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	root := node.StateDir()
	if err := node.PrepareStateDir(root); err != nil {
		return fmt.Errorf("rayo: %w", err)
	}
	pruneSessions(root, keepSessions)
	session := filepath.Join(root, fmt.Sprintf("s-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:])))
	rl, err := raylet.Start(raylet.Config{
		SessionDir:     session,
		InheritEnv:     true, // the workers run this program, for its user
		NumCPUs:        o.numCPUs,
		Resources:      withMemory(withGPUs(o.resources, o.numGPUs), o.nodeMemory),
		StoreCapacity:  o.storeBytes,
		SpillDir:       o.spillDir,
		SpillThreshold: o.spillFull,
		WorkerExe:      exe,
		WorkerArgs:     os.Args[1:],
		LogToDriver:    o.logToDriver,
		LogOutput:      os.Stdout,
		EmbeddedJob:    hex.EncodeToString(rnd[:]),
		DriverAddr:     filepath.Join(session, "driver.sock"),
		MaxTasks:       maxTaskRecords(),

		StoreSource:          "rayo.ObjectStoreMemory",
		MemoryUsageThreshold: o.memThreshold,
	})
	if err != nil {
		return fmt.Errorf("rayo: start raylet: %w", err)
	}
	rt, err := core.New(core.Config{
		Addr:   filepath.Join(session, "driver.sock"),
		Raylet: rl,
		Arena:  rl.Arena(),
	}, nil)
	if err != nil {
		_ = rl.Close()
		return fmt.Errorf("rayo: start driver: %w", err)
	}
	rl.SetLocalOwner(rt.HandleRaylet) // what the raylet tells owners (rpc.MWorkerOOM)
	prefaultStore(rl.Arena())
	cluster.rt, cluster.raylet, cluster.session, cluster.node = rt, rl, session, rl.NodeName()
	cluster.dash, cluster.dashSrc = startDashboard(o.dashboardPort, rl)
	return nil
}

// startDashboard starts an embedded cluster's API server on loopback, on
// port (-1: RAYO_DASHBOARD_PORT or DefaultDashboardPort; 0: none), or on a
// free port if that one is taken. It reads the cluster through the
// raylet's socket, as a client would. A failure costs only the dashboard.
func startDashboard(port int, rl *raylet.Raylet) (*dashboard.HTTPServer, *dashboard.RPCSource) {
	if port < 0 {
		port = DefaultDashboardPort
		if p, err := strconv.Atoi(os.Getenv("RAYO_DASHBOARD_PORT")); err == nil {
			port = p
		}
	}
	if port == 0 {
		return nil, nil
	}
	src := dashboard.NewRPCSource(rl.Addr(), "")
	h := dashboard.New(dashboard.Config{Source: src, UI: web.Handler(), Metrics: rl.Metrics().Registry})
	srv, err := dashboard.Listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), h)
	if err != nil {
		srv, err = dashboard.Listen("127.0.0.1:0", h)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rayo: no dashboard:", err)
		_ = src.Close()
		return nil, nil
	}
	return srv, src
}

// withGPUs is a node's resources with its GPUs: n (NumGPUs), or when n < 0
// (not given) as many as the machine has, unless Resources named some.
func withGPUs(res map[string]float64, n float64) map[string]float64 {
	out := make(map[string]float64, len(res)+1)
	for k, v := range res {
		out[k] = v
	}
	switch {
	case n > 0:
		out[raylet.GPU] = n
	case n == 0:
		delete(out, raylet.GPU)
	case out[raylet.GPU] == 0:
		if d := raylet.DetectGPUs(); d > 0 {
			out[raylet.GPU] = float64(d)
		}
	}
	return out
}

// GPUIDs are the GPUs (their indexes on the node) of the task or actor
// that calls it, as CUDA_VISIBLE_DEVICES names them (Ray's
// get_gpu_ids()); nil outside tasks, and for tasks that asked for none.
func GPUIDs() []int { return worker.GPUIDs() }

// DashboardURL is where the cluster's API server answers (the web
// dashboard, the state API under /api/v0/ and /metrics): the embedded
// cluster's, or for a driver of a cluster started with rayo start, its
// head's. It is "" when there is none (DashboardPort(0), rayo start
// --dashboard-port 0) or before Init.
func DashboardURL() string {
	cluster.Lock()
	defer cluster.Unlock()
	if cluster.dash == nil {
		return cluster.headDash
	}
	return "http://" + cluster.dash.Addr()
}

// IsInitialized reports whether Init has run (and Shutdown not since).
func IsInitialized() bool { return current() != nil }

// Shutdown stops everything Init started: worker processes, sockets and
// the shared-memory store. Refs made before it fail with ErrShutdown.
func Shutdown() error {
	cluster.Lock()
	rt, rl, conn, arena := cluster.rt, cluster.raylet, cluster.conn, cluster.arena
	cluster.rt, cluster.raylet, cluster.conn, cluster.arena = nil, nil, nil, nil
	dash, dashSrc := cluster.dash, cluster.dashSrc
	cluster.dash, cluster.dashSrc, cluster.headDash = nil, nil, ""
	session := cluster.session
	cluster.Unlock()
	if rt == nil {
		return nil
	}
	if dash != nil {
		_ = dash.Close()
		_ = dashSrc.Close()
	}
	if conn != nil {
		// Let the node pass on the last output of this job's workers.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = conn.Call(ctx, rpc.MJobDone, &pb.Empty{}, nil)
		cancel()
	}
	err := rt.Close()
	if rl != nil {
		if e := rl.Close(); err == nil {
			err = e
		}
	}
	if conn != nil {
		// The raylet ends the job, and its workers, when this closes.
		_ = conn.Close()
		_ = arena.Close()
		_ = os.RemoveAll(session) // a joined driver's folder holds only its socket
	}
	return err
}

// joinCluster connects this driver to a cluster started with `rayo start`:
// to the raylet of the node it runs on, as a job whose workers run this
// executable. cluster is locked.
func joinCluster(o options) error {
	c, err := node.Resolve(o.address, "")
	if err != nil {
		return fmt.Errorf("rayo: %w", err)
	}
	rec, err := node.ReadCluster(node.StateDir())
	if err != nil || rec.Address != c.Address || rec.RayletSocket == "" {
		return fmt.Errorf("%w: a driver runs on a node of its cluster, and this machine has no node of %s (see rayo start)", ErrNotSupported, c.Address)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ready atomic.Pointer[core.Runtime]
	conn, err := rpc.Dial(ctx, rec.RayletSocket, fromLocalRaylet(&ready))
	if err != nil {
		return fmt.Errorf("rayo: cannot reach this node's raylet (is the cluster at %s running?): %w", c.Address, err)
	}
	exe, err := os.Executable()
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("rayo: cannot find this executable for workers: %w", err)
	}
	arena, err := objstore.OpenArena(fmt.Sprintf("/proc/%d/fd/%d", rec.RayletPID, rec.StoreFD))
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("rayo: map the node's object store: %w", err)
	}
	jobID, cred, jobKey := driverCredential(rec.Token)
	session, err := jobSession(jobID)
	if err != nil {
		_ = conn.Close()
		_ = arena.Close()
		return err
	}
	prefaultStore(arena)
	cfg := core.Config{
		Addr:   filepath.Join(session, "driver.sock"),
		Raylet: &rayletclient.Client{Conn: conn},
		Arena:  arena,
		Job:    jobID,
	}
	if err := driverTLS(o.tlsFiles, rec.TLSDir); err != nil {
		_ = conn.Close()
		_ = arena.Close()
		return err
	}
	if rec.NodeAddr != "" {
		// Workers on other nodes reach this driver over TCP.
		cfg.ListenTCP = net.JoinHostPort(rec.Host, "0")
		cfg.Token, cfg.JobKey, cfg.Node, cfg.NodeAddr = cred, jobKey, rec.Node, rec.NodeAddr
		cfg.DialRaylet = core.RayletDialer(cred)
	}
	rt, err := core.New(cfg, driverMux())
	if err != nil {
		_ = conn.Close()
		_ = arena.Close()
		return fmt.Errorf("rayo: start driver: %w", err)
	}
	job := &pb.JobInfo{JobId: jobID, Exe: exe, Args: os.Args[1:], LogToDriver: o.logToDriver, DriverAddr: rt.Addr(),
		SubmissionId: os.Getenv(jobs.EnvSubmissionID)}
	if err := conn.Call(ctx, rpc.MRegisterJob, job, &pb.Status{}); err != nil {
		_ = rt.Close()
		_ = conn.Close()
		_ = arena.Close()
		return fmt.Errorf("rayo: start job: %w", err)
	}
	ready.Store(rt)
	cluster.rt, cluster.conn, cluster.arena, cluster.session, cluster.node = rt, conn, arena, session, rec.Node
	cluster.gcsAddr, cluster.token, cluster.headDash = rec.Address, rec.Token, rec.Dashboard
	return nil
}

// fromLocalRaylet handles what the node's raylet sends a joined driver:
// its workers' output, and news for the runtime once ready holds it.
func fromLocalRaylet(ready *atomic.Pointer[core.Runtime]) rpc.Handler {
	return rpc.HandlerFunc(func(c *rpc.Conn, m rpc.Method, k rpc.Kind, id uint64, body []byte) {
		if m == rpc.MLog {
			printLogs(c, m, k, id, body)
		} else if rt := ready.Load(); rt != nil {
			rt.HandleRaylet(m, body)
		}
		if k == rpc.KindRequest && m != rpc.MLog {
			_ = c.Reply(id, &pb.Empty{}) // the news is taken (rpc.MWorkerOOM)
		}
	})
}

// jobSession makes a joined driver's folder in the state folder
// (job-<pid>-<id>, which holds its socket), pruning those of drivers
// gone.
func jobSession(jobID string) (session string, err error) {
	root := node.StateDir()
	pruneSessions(root, keepSessions)
	session = filepath.Join(root, fmt.Sprintf("job-%d-%s", os.Getpid(), jobID))
	if err := os.MkdirAll(session, 0o755); err != nil {
		return "", err
	}
	return session, nil
}

// NodeID is the ID of the node this process runs on (Ray's
// get_runtime_context().get_node_id()): in a task, the node running it.
// Pass it to NodeAffinity. It is "" before Init.
func NodeID() string {
	if worker.IsWorker() {
		return os.Getenv(rayletclient.EnvNode)
	}
	cluster.Lock()
	defer cluster.Unlock()
	if cluster.rt == nil {
		return ""
	}
	return cluster.node
}

// SessionDir is the folder holding this cluster's sockets and worker logs.
func SessionDir() string {
	cluster.Lock()
	defer cluster.Unlock()
	return cluster.session
}

// keepSessions is how many session folders of finished drivers Init keeps
// (for their logs); older ones are removed.
const keepSessions = 20

// pruneSessions removes the oldest session folders under root whose driver
// is no longer running, keeping the newest keep of them, and the folders
// of joined drivers that died without Shutdown (they hold only a socket).
func pruneSessions(root string, keep int) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	type dead struct {
		path string
		mod  time.Time
	}
	var old []dead
	for _, e := range entries {
		var pid int
		_, serr := fmt.Sscanf(e.Name(), "s-%d-", &pid)
		_, jerr := fmt.Sscanf(e.Name(), "job-%d-", &pid)
		if serr != nil && jerr != nil || !e.IsDir() {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // its driver still runs
		}
		if jerr == nil {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
			continue
		}
		if info, err := e.Info(); err == nil {
			old = append(old, dead{filepath.Join(root, e.Name()), info.ModTime()})
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
	for i := keep; i < len(old); i++ {
		_ = os.RemoveAll(old[i].path)
	}
}

// driverMux is what a driver serves besides the runtime's own methods:
// its workers' output, which it prints.
func driverMux() *rpc.Mux {
	mux := rpc.NewMux("driver")
	rpc.HandleNotify(mux, rpc.Log, func(_ context.Context, msg *pb.LogLines) {
		for _, l := range msg.Lines {
			fmt.Fprintln(os.Stdout, l)
		}
	})
	return mux
}

// printLogs shows the output of this job's workers that the node's raylet
// sends, as an embedded cluster does.
func printLogs(_ *rpc.Conn, m rpc.Method, _ rpc.Kind, _ uint64, body []byte) {
	if m != rpc.MLog {
		return
	}
	msg := &pb.LogLines{}
	if proto.Unmarshal(body, msg) != nil {
		return
	}
	for _, l := range msg.Lines {
		fmt.Fprintln(os.Stdout, l)
	}
}

// maxTaskRecords is the size of an embedded cluster's task table, from
// RAYO_MAX_TASK_RECORDS (0: the default).
func maxTaskRecords() int {
	n, _ := strconv.Atoi(os.Getenv(tasktable.EnvMaxTaskRecords))
	return n
}
