package node

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/rayo-dev/rayo/internal/dashboard"
	"github.com/rayo-dev/rayo/internal/dashboard/web"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// EmbeddedConfig describes an embedded cluster: one node inside the
// driver's own process (rayo.Init without an address).
type EmbeddedConfig struct {
	// StateDir is where the session folder goes ("": StateDir()).
	StateDir string
	// NumCPUs is the node's CPUs; it must be positive.
	NumCPUs float64
	// NumGPUs is the node's GPUs; negative: as many as the machine has
	// (raylet.DetectGPUs), unless Resources names some; 0: none.
	NumGPUs float64
	// Memory is the node's memory resource in bytes; 0: its memory total.
	Memory float64
	// Resources are the node's custom resources.
	Resources map[string]float64
	// ObjectStoreMemory is the bytes of the shared-memory object store
	// (0: objstore.DefaultSizing); StoreSource says where the figure
	// comes from, for the log (an option's name).
	ObjectStoreMemory int64
	StoreSource       string
	// SpillDir and SpillThreshold are the raylet's (raylet.Config).
	SpillDir       string
	SpillThreshold float64
	// MemoryUsageThreshold is the memory monitor's threshold (0: the
	// default).
	MemoryUsageThreshold float64
	// WorkerExe and WorkerArgs are what workers run: the driver's own
	// executable, and its arguments. Workers inherit the driver's whole
	// environment: they run this program, for its user.
	WorkerExe  string
	WorkerArgs []string
	// LogToDriver copies the workers' output, prefixed, to LogOutput.
	LogToDriver bool
	LogOutput   io.Writer
	// DashboardPort is the API server's port on loopback (0: none); if
	// it is taken, a free port is used. It starts with DriverRunning.
	DashboardPort int
	// Warn receives what costs the cluster a part of itself but not its
	// start (no dashboard); nil discards it.
	Warn io.Writer
}

// Embedded is a running embedded cluster: its raylet, which is its
// control store too, with the shared-memory store and the worker pool,
// in a session folder of its own under the state folder; and, unless
// turned off, the API server on loopback.
type Embedded struct {
	raylet  *raylet.Raylet
	session string
	job     string // the job ID of the driver hosting it
	dash    *dashboard.HTTPServer
	dashSrc *dashboard.RPCSource

	root     string    // the state folder, pruned once the driver runs
	dashPort int       // the API server's port, once the driver runs (0: none)
	warn     io.Writer // see EmbeddedConfig.Warn
}

// StartEmbedded starts an embedded cluster: it prepares the state folder
// and starts the raylet, whose driver is to serve at DriverAddr. What can
// wait starts once the driver runs (DriverRunning).
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	root := cfg.StateDir
	if root == "" {
		root = StateDir()
	}
	if err := PrepareStateDir(root); err != nil {
		return nil, err
	}
	session, job := newSession(root)
	e := &Embedded{session: session, job: job, root: root, dashPort: cfg.DashboardPort, warn: cfg.Warn}
	rl, err := raylet.Start(raylet.Config{
		SessionDir:     session,
		InheritEnv:     true, // the workers run this program, for its user
		NumCPUs:        cfg.NumCPUs,
		Resources:      nodeResources(cfg.Resources, cfg.NumGPUs, cfg.Memory),
		StoreCapacity:  cfg.ObjectStoreMemory,
		SpillDir:       cfg.SpillDir,
		SpillThreshold: cfg.SpillThreshold,
		WorkerExe:      cfg.WorkerExe,
		WorkerArgs:     cfg.WorkerArgs,
		LogToDriver:    cfg.LogToDriver,
		LogOutput:      cfg.LogOutput,
		EmbeddedJob:    job,
		DriverAddr:     e.DriverAddr(),
		MaxTasks:       maxTaskRecords(),

		StoreSource:          cfg.StoreSource,
		MemoryUsageThreshold: cfg.MemoryUsageThreshold,
	})
	if err != nil {
		return nil, fmt.Errorf("start raylet: %w", err)
	}
	e.raylet = rl
	return e, nil
}

// newSession names a new session folder under the state folder root:
// s-<pid>-<id>, where id is random; it returns the folder and id.
func newSession(root string) (dir, id string) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id = hex.EncodeToString(rnd[:])
	return filepath.Join(root, fmt.Sprintf("s-%d-%s", os.Getpid(), id)), id
}

// nodeResources is an embedded node's resources: res, with its GPUs (n;
// or when n < 0, as many as the machine has unless res names some) and
// its memory resource (memory bytes, when positive; otherwise the raylet
// offers the node's memory total).
func nodeResources(res map[string]float64, gpus, memory float64) map[string]float64 {
	out := make(map[string]float64, len(res)+2)
	for k, v := range res {
		out[k] = v
	}
	switch {
	case gpus > 0:
		out[raylet.GPU] = gpus
	case gpus == 0:
		delete(out, raylet.GPU)
	case out[raylet.GPU] == 0:
		if d := raylet.DetectGPUs(); d > 0 {
			out[raylet.GPU] = float64(d)
		}
	}
	if memory > 0 {
		out[raylet.MemoryResource] = memory
	}
	return out
}

// maxTaskRecords is the size of an embedded cluster's task table, from
// RAYO_MAX_TASK_RECORDS (0: the default).
func maxTaskRecords() int {
	n, _ := strconv.Atoi(os.Getenv(tasktable.EnvMaxTaskRecords))
	return n
}

// startDashboard starts the API server on loopback, on port or, if that
// one is taken, on a free port. It reads the cluster through the raylet's
// socket, as a client would. A failure costs only the dashboard.
func (e *Embedded) startDashboard() {
	port, warn := e.dashPort, e.warn
	src := dashboard.NewRPCSource(e.raylet.Addr(), "")
	h := dashboard.New(dashboard.Config{Source: src, UI: web.Handler(), Metrics: e.raylet.Metrics().Registry})
	srv, err := dashboard.Listen(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), h)
	if err != nil {
		srv, err = dashboard.Listen("127.0.0.1:0", h)
	}
	if err != nil {
		if warn != nil {
			fmt.Fprintln(warn, "rayo: no dashboard:", err)
		}
		_ = src.Close()
		return
	}
	e.dash, e.dashSrc = srv, src
}

// DriverRunning does what waits until the driver hosting the cluster
// runs, off the path to its first result (init_to_first_result): it
// prunes the session folders of drivers gone (keeping the newest
// KeepSessions), starts the API server when it has a port, and arms the
// driver's prefault window of the store, mapped while the driver
// exchanges no messages, calls (its runtime's count of calls, see
// core.Runtime.Calls) stands still and the raylet starts no worker.
func (e *Embedded) DriverRunning(calls func() uint64) {
	PruneSessions(e.root, KeepSessions)
	if e.dashPort != 0 {
		e.startDashboard()
	}
	prefaultStore(e.raylet.Arena(), calls, e.raylet.StartingWorkers)
}

// Raylet is the cluster's raylet: the driver's RayletClient, and the
// owner of its store.
func (e *Embedded) Raylet() *raylet.Raylet { return e.raylet }

// SessionDir is the cluster's session folder: its sockets and logs.
func (e *Embedded) SessionDir() string { return e.session }

// DriverAddr is the socket the driver hosting the cluster serves on.
func (e *Embedded) DriverAddr() string { return filepath.Join(e.session, "driver.sock") }

// NodeName is the node's name (see ids.NodeID.Name).
func (e *Embedded) NodeName() string { return e.raylet.NodeName() }

// DashboardURL is the API server's (http://127.0.0.1:PORT), or "".
func (e *Embedded) DashboardURL() string {
	if e.dash == nil {
		return ""
	}
	return "http://" + e.dash.Addr()
}

// Close stops the API server, then the raylet: its workers, sockets and
// store.
func (e *Embedded) Close() error {
	if e.dash != nil {
		_ = e.dash.Close()
		_ = e.dashSrc.Close()
	}
	return e.raylet.Close()
}
