package rayo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/worker"
)

// cluster is the cluster this process belongs to, embedded or joined, and
// the runtime it reaches it with; rt is nil outside Init ... Shutdown.
var cluster struct {
	sync.Mutex // protects the fields below
	rt         *core.Runtime
	embedded   *node.Embedded // embedded cluster
	joined     *node.Joined   // or joined cluster: this driver's place on its node
	session    string
	node       string // this node's ID
	gcsAddr    string // joined cluster: the control store, and its token
	token      string
	dashboard  string // the API server's URL: the embedded cluster's, or the head's if known
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
	emb, err := node.StartEmbedded(node.EmbeddedConfig{
		NumCPUs:              o.numCPUs,
		NumGPUs:              o.numGPUs,
		Memory:               o.nodeMemory,
		Resources:            o.resources,
		ObjectStoreMemory:    o.storeBytes,
		StoreSource:          "rayo.ObjectStoreMemory",
		SpillDir:             o.spillDir,
		SpillThreshold:       o.spillFull,
		MemoryUsageThreshold: o.memThreshold,
		WorkerExe:            exe,
		WorkerArgs:           os.Args[1:],
		LogToDriver:          o.logToDriver,
		LogOutput:            os.Stdout,
		DashboardPort:        dashboardPort(o.dashboardPort),
		Warn:                 os.Stderr,
	})
	if err != nil {
		return fmt.Errorf("rayo: %w", err)
	}
	rl := emb.Raylet()
	rt, err := core.New(core.Config{
		Addr:   emb.DriverAddr(),
		Raylet: rl,
		Arena:  rl.Arena(),
	}, nil)
	if err != nil {
		_ = emb.Close()
		return fmt.Errorf("rayo: start driver: %w", err)
	}
	rl.SetLocalOwner(rt.WorkerKilled) // what the raylet pushes to owners (rpc.WorkerOOM)
	emb.DriverRunning(rt.Calls)
	cluster.rt, cluster.embedded, cluster.session, cluster.node = rt, emb, emb.SessionDir(), emb.NodeName()
	cluster.dashboard = emb.DashboardURL()
	return nil
}

// dashboardPort is the embedded API server's port: port, or when it is
// negative (not given), RAYO_DASHBOARD_PORT or DefaultDashboardPort.
func dashboardPort(port int) int {
	if port >= 0 {
		return port
	}
	if p, err := strconv.Atoi(os.Getenv("RAYO_DASHBOARD_PORT")); err == nil {
		return p
	}
	return DefaultDashboardPort
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
	return cluster.dashboard
}

// IsInitialized reports whether Init has run (and Shutdown not since).
func IsInitialized() bool { return current() != nil }

// Shutdown stops everything Init started: worker processes, sockets and
// the shared-memory store. Refs made before it fail with ErrShutdown.
func Shutdown() error {
	cluster.Lock()
	rt, emb, joined := cluster.rt, cluster.embedded, cluster.joined
	cluster.rt, cluster.embedded, cluster.joined = nil, nil, nil
	cluster.dashboard = ""
	cluster.Unlock()
	if rt == nil {
		return nil
	}
	if joined != nil {
		joined.JobDone() // the node passes on the last output of this job's workers
	}
	err := rt.Close()
	if emb != nil {
		if e := emb.Close(); err == nil {
			err = e
		}
	}
	if joined != nil {
		joined.Close() // the raylet ends the job, and its workers
	}
	return err
}

// joinCluster connects this driver to a cluster started with `rayo start`:
// to the raylet of the node it runs on, as a job whose workers run this
// executable. cluster is locked.
func joinCluster(o options) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rayo: cannot find this executable for workers: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ready atomic.Pointer[core.Runtime]
	j, err := node.Join(ctx, node.JoinConfig{Address: o.address, Pushes: fromLocalRaylet(&ready), TLSFiles: o.tlsFiles})
	if errors.Is(err, node.ErrNoLocalNode) {
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	if err != nil {
		return fmt.Errorf("rayo: %w", err)
	}
	rec := j.Info
	var cred, jobKey string
	j.JobID, cred, jobKey = driverCredential(rec.Token, j.JobID)
	cfg := core.Config{Addr: j.DriverAddr(), Raylet: j.Raylet, Arena: j.Arena, Job: j.JobID}
	if rec.NodeAddr != "" {
		// Workers on other nodes reach this driver over TCP.
		cfg.ListenTCP = net.JoinHostPort(rec.Host, "0")
		cfg.Token, cfg.JobKey, cfg.Node, cfg.NodeAddr = cred, jobKey, rec.Node, rec.NodeAddr
		cfg.DialRaylet = core.RayletDialer(cred)
	}
	rt, err := core.New(cfg, driverMux())
	if err != nil {
		j.Close()
		return fmt.Errorf("rayo: start driver: %w", err)
	}
	if err := j.RegisterJob(ctx, exe, os.Args[1:], o.logToDriver, rt.Addr()); err != nil {
		_ = rt.Close()
		j.Close()
		return fmt.Errorf("rayo: %w", err)
	}
	ready.Store(rt)
	j.DriverRunning(rt.Calls)
	cluster.rt, cluster.joined, cluster.session, cluster.node = rt, j, j.Session, rec.Node
	cluster.gcsAddr, cluster.token, cluster.dashboard = rec.Address, rec.Token, rec.Dashboard
	return nil
}

// fromLocalRaylet serves what the node's raylet sends a joined driver:
// its workers' output, and news for the runtime once ready holds it.
func fromLocalRaylet(ready *atomic.Pointer[core.Runtime]) *rpc.Mux {
	mux := driverMux()
	core.RayletPushes(mux, ready.Load)
	return mux
}

// NodeID is the ID of the node this process runs on (Ray's
// get_runtime_context().get_node_id()): in a task, the node running it.
// Pass it to NodeAffinity. It is "" before Init.
func NodeID() string {
	if worker.IsWorker() {
		return worker.NodeID()
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
