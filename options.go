package rayo

import (
	"fmt"
	"math"
	"strings"

	"github.com/rayo-dev/rayo/internal/core"
)

// Option configures a call: Init, a remote function (at declaration or
// with Options), an actor (likewise), GetActor or NewPlacementGroup. Each
// option's documentation says which calls it applies to; a call given an
// option that does not apply to it fails with an error naming the option
// (for a remote function or an actor: its refs' Err and every Get).
type Option struct {
	name    string // the option's function, for errors
	applies calls  // the calls it applies to
	set     func(*options)
}

// calls is a set of the calls that take options.
type calls uint8

const (
	forInit calls = 1 << iota
	forTask
	forActor
	forGetActor
	forPlacementGroup
)

// String names a call as errors do: "a task", "Init".
func (c calls) String() string {
	var names []string
	for _, n := range []struct {
		c    calls
		name string
	}{{forInit, "Init"}, {forTask, "a task"}, {forActor, "an actor"}, {forGetActor, "GetActor"}, {forPlacementGroup, "a placement group"}} {
		if c&n.c != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ", ")
}

// option makes an Option named name that applies to the calls applies.
func option(name string, applies calls, set func(*options)) Option {
	return Option{name: name, applies: applies, set: set}
}

type options struct {
	// Init
	address       string
	numCPUs       float64
	numGPUs       float64 // -1: as detected
	resources     map[string]float64
	storeBytes    int64
	spillDir      string
	spillFull     float64
	memThreshold  float64 // the memory monitor's threshold (memory.go); 0: the default
	nodeMemory    float64 // the node's memory resource; 0: its memory total
	logToDriver   bool
	dashboardPort int      // -1: the default (DefaultDashboardPort, or RAYO_DASHBOARD_PORT)
	tlsFiles      []string // certificate, key, CA (tls.go)
	// tasks
	name            string
	taskCPUs        float64
	taskGPUs        float64
	taskMemory      float64 // bytes of the "memory" resource (memory.go)
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
	return options{logToDriver: true, taskCPUs: 1, maxRetries: 3, dashboardPort: -1, numGPUs: -1}
}

// apply sets opts, given to call, and records in optErr the first that
// does not apply to it.
func (o *options) apply(call calls, opts []Option) {
	for _, opt := range opts {
		switch {
		case opt.set == nil:
			o.fail(fmt.Errorf("rayo: a zero Option given to %s: make options with their functions (NumCPUs, Name, ...)", call))
		case opt.applies&call == 0:
			o.fail(fmt.Errorf("rayo: option %s does not apply to %s (only to %s)", opt.name, call, opt.applies))
		default:
			opt.set(o)
		}
	}
}

// fail records err unless an earlier error is recorded.
func (o *options) fail(err error) {
	if o.optErr == nil {
		o.optErr = err
	}
}

// NumCPUs is, for Init, the CPUs of the local node (default: the
// machine's); for a task or an actor, the CPUs it needs (default 1 for a
// task, 0 for an actor).
func NumCPUs(n float64) Option {
	return option("NumCPUs", forInit|forTask|forActor, func(o *options) { o.numCPUs, o.taskCPUs = n, n })
}

// NumGPUs is, for Init, the GPUs of the local node (default: those the
// NVIDIA driver lists in /proc/driver/nvidia/gpus); for a task or an
// actor, the GPUs it needs (default 0): a whole number, or a share of one
// GPU below 1. A worker runs it with CUDA_VISIBLE_DEVICES set to the GPUs
// it got, which GPUIDs returns too (Ray's num_gpus and get_gpu_ids).
func NumGPUs(n float64) Option {
	return option("NumGPUs", forInit|forTask|forActor, func(o *options) {
		o.numGPUs, o.taskGPUs = n, n
		if n < 0 || n > 1 && n != math.Trunc(n) {
			o.fail(fmt.Errorf("rayo: NumGPUs(%g): want a whole number of GPUs, or a share of one below 1", n))
		}
	})
}

// Resources declares custom resources: for Init, what the node has; for a
// task or an actor, what it needs.
func Resources(r map[string]float64) Option {
	return option("Resources", forInit|forTask|forActor, func(o *options) { o.resources, o.taskResources = r, r })
}

// Name names a task in errors, logs and the state API (default: the
// function's name, or for a function literal where its code is, as
// "pkg/file.go:14"). For an actor, it is the name GetActor finds it by;
// for a placement group, the name GetPlacementGroup finds it by.
func Name(name string) Option {
	return option("Name", forTask|forActor|forPlacementGroup, func(o *options) { o.name = name })
}

// MaxRetries, for a task, is how many times it is retried when its worker
// dies (default 3; -1 is unlimited). With RetryExceptions, errors the
// function returns or panics are retried too.
func MaxRetries(n int) Option {
	return option("MaxRetries", forTask, func(o *options) { o.maxRetries = n })
}

// RetryExceptions, for a task, makes it retry (up to MaxRetries) when the function
// itself fails.
func RetryExceptions(retry bool) Option {
	return option("RetryExceptions", forTask, func(o *options) { o.retryExceptions = retry })
}

// LogToDriver, for Init, copies the output of workers to the driver's
// standard output, each line prefixed with "(task pid=N)" (default true).
// Worker logs are kept in the session folder either way.
func LogToDriver(on bool) Option {
	return option("LogToDriver", forInit, func(o *options) { o.logToDriver = on })
}

// ObjectStoreMemory, for Init, is the size of the node's shared-memory
// object store in bytes (default: 30% of memory).
func ObjectStoreMemory(bytes int64) Option {
	return option("ObjectStoreMemory", forInit, func(o *options) { o.storeBytes = bytes })
}

// ObjectSpillingDir, for Init, is the folder where objects spill when the
// store passes 80% of its memory (default: the session folder's spill/).
// It is created 0700, and refused if another user owns it or it is a
// symlink.
func ObjectSpillingDir(dir string) Option {
	return option("ObjectSpillingDir", forInit, func(o *options) { o.spillDir = dir })
}

// ObjectSpillingThreshold, for Init, is the fraction of the spill folder's
// file system past which nothing more spills (default 0.95): a Put that
// then does not fit fails with ErrStoreFull.
func ObjectSpillingThreshold(fraction float64) Option {
	return option("ObjectSpillingThreshold", forInit, func(o *options) { o.spillFull = fraction })
}

// DashboardPort is, for Init, the loopback port of the embedded cluster's
// API server: the web dashboard, the state API and /metrics (Ray's
// dashboard_port). 0 turns it off. The default is DefaultDashboardPort, or
// RAYO_DASHBOARD_PORT when set; if that port is taken, a free one is used
// (see DashboardURL).
func DashboardPort(port int) Option {
	return option("DashboardPort", forInit, func(o *options) { o.dashboardPort = port })
}

// DefaultDashboardPort is Ray's dashboard port.
const DefaultDashboardPort = 8265

// Address, for Init, connects to an existing cluster instead of starting
// one (also taken from RAYO_ADDRESS).
func Address(addr string) Option {
	return option("Address", forInit, func(o *options) { o.address = addr })
}

// Spread, for a task or an actor, spreads its runs over the cluster's
// nodes rather than filling the local node first (Ray's "SPREAD"
// scheduling strategy).
func Spread() Option {
	return option("Spread", forTask|forActor, func(o *options) { o.placement = core.Placement{Strategy: "SPREAD"} })
}

// NodeAffinity, for a task or an actor, runs it on the node with this ID
// (see NodeID). When soft, it runs elsewhere if that node is gone or lacks
// the resources; otherwise it fails with ErrInfeasible.
func NodeAffinity(nodeID string, soft bool) Option {
	return option("NodeAffinity", forTask|forActor, func(o *options) { o.placement = core.Placement{Node: nodeID, Soft: soft} })
}
