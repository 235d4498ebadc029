package rayo

import "github.com/rayo-dev/rayo/internal/core"

// Option configures Init, a remote function (at declaration or with
// Options), or both, as its documentation says.
type Option func(*options)

type options struct {
	// Init
	address       string
	numCPUs       float64
	resources     map[string]float64
	storeBytes    int64
	logToDriver   bool
	dashboardPort int // -1: the default (DefaultDashboardPort, or RAYO_DASHBOARD_PORT)
	// tasks
	name            string
	taskCPUs        float64
	taskResources   map[string]float64
	maxRetries      int
	retryExceptions bool
	placement       core.Placement
	optErr          error // an option given a bad value (see InPlacementGroup)
	// actors
	maxConcurrency int
	namespace      string
	maxRestarts    int
	maxTaskRetries int
	detached       bool
}

func defaultOptions() options {
	return options{logToDriver: true, taskCPUs: 1, maxRetries: 3, dashboardPort: -1}
}

func (o *options) apply(opts []Option) {
	for _, f := range opts {
		f(o)
	}
}

// NumCPUs is, for Init, the CPUs of the local node (default: the
// machine's); for a task, the CPUs it needs (default 1).
func NumCPUs(n float64) Option {
	return func(o *options) { o.numCPUs, o.taskCPUs = n, n }
}

// Resources declares custom resources: for Init, what the node has; for a
// task, what it needs.
func Resources(r map[string]float64) Option {
	return func(o *options) { o.resources, o.taskResources = r, r }
}

// Name names a task in errors, logs and the state API (default: the
// function's name, or for a function literal where its code is, as
// "pkg/file.go:14"). For an actor, it is the name GetActor finds it by.
func Name(name string) Option { return func(o *options) { o.name = name } }

// MaxRetries is how many times a task is retried when its worker dies
// (default 3; -1 is unlimited). With RetryExceptions, errors the function
// returns or panics are retried too.
func MaxRetries(n int) Option { return func(o *options) { o.maxRetries = n } }

// RetryExceptions makes a task retry (up to MaxRetries) when the function
// itself fails.
func RetryExceptions(retry bool) Option { return func(o *options) { o.retryExceptions = retry } }

// LogToDriver, for Init, copies the output of workers to the driver's
// standard output, each line prefixed with "(task pid=N)" (default true).
// Worker logs are kept in the session folder either way.
func LogToDriver(on bool) Option { return func(o *options) { o.logToDriver = on } }

// ObjectStoreMemory, for Init, is the size of the node's shared-memory
// object store in bytes (default: 30% of memory).
func ObjectStoreMemory(bytes int64) Option { return func(o *options) { o.storeBytes = bytes } }

// DashboardPort is, for Init, the loopback port of the embedded cluster's
// API server: the web dashboard, the state API and /metrics (Ray's
// dashboard_port). 0 turns it off. The default is DefaultDashboardPort, or
// RAYO_DASHBOARD_PORT when set; if that port is taken, a free one is used
// (see DashboardURL).
func DashboardPort(port int) Option { return func(o *options) { o.dashboardPort = port } }

// DefaultDashboardPort is Ray's dashboard port.
const DefaultDashboardPort = 8265

// Address, for Init, connects to an existing cluster instead of starting
// one (also taken from RAYO_ADDRESS).
func Address(addr string) Option { return func(o *options) { o.address = addr } }

// Spread, for a task or an actor, spreads its runs over the cluster's
// nodes rather than filling the local node first (Ray's "SPREAD"
// scheduling strategy).
func Spread() Option {
	return func(o *options) { o.placement = core.Placement{Strategy: "SPREAD"} }
}

// NodeAffinity, for a task or an actor, runs it on the node with this ID
// (see NodeID). When soft, it runs elsewhere if that node is gone or lacks
// the resources; otherwise it fails with ErrInfeasible.
func NodeAffinity(nodeID string, soft bool) Option {
	return func(o *options) { o.placement = core.Placement{Node: nodeID, Soft: soft} }
}
