// Package bench is rayo's microbenchmark suite: Ray's microbenchmarks under
// Ray's metric names, plus this machine's floor (a round trip between two
// processes over a Unix socket, and memcpy bandwidth) measured in the same
// run, so that every figure can be read as a ratio to what the hardware
// allows. `rayo microbenchmark` (cmd/rayo) is a thin front end to Run.
//
// The suite re-executes its own binary twice: as rayo's worker processes
// (rayo.ServeWorker must run first thing in main or TestMain) and as the
// child side of measurements that need a process of their own (the echo
// peer of unix_socket_round_trips and the fresh cluster of
// init_to_first_result): main or TestMain must hand os.Args[2:] to RunChild
// when os.Args[1] is ChildCommand.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"time"

	"github.com/rayo-dev/rayo"
)

// Config selects and sizes the measurements.
type Config struct {
	// Duration is how long each metric is measured (after a short warm-up).
	Duration time.Duration
	// Address, if set, runs the cluster metrics as a driver of the cluster
	// at this address (started with `rayo start`) instead of an embedded one.
	Address string
	// Filter, when set, runs only the metrics whose names it matches (the
	// floors the selected metrics are compared with run too).
	Filter *regexp.Regexp
	// NumCPUs is the CPUs of the embedded cluster (default: the machine's).
	NumCPUs int
	// PutBytes is the size of the []byte that single_client_put_gigabytes
	// puts and memcpy_gigabytes copies (default 256 MiB).
	PutBytes int
	// GetBytes is the size of the []float64 that
	// single_client_get_1GiB_float64 gets (default 1 GiB).
	GetBytes int
	// Batch is how many tasks the batched task metrics submit at once
	// (default 1000, as Ray's suite).
	Batch int
	// Clients is the number of client tasks of multi_client_tasks_async
	// (default 4, as Ray's suite).
	Clients int
	// Actors is the number of actors of 1_n_actor_calls_async and of the
	// n_n actor metrics (default NumCPUs; Ray's suite takes half the
	// machine's CPUs).
	Actors int
	// ActorsPerRound is how many actors actor_creation_per_second creates
	// at once (default 10).
	ActorsPerRound int
	// MemoryActors is the number of live actors memory_per_actor holds
	// (default 100).
	MemoryActors int
	// ContainedRefs is the number of refs in the object of
	// single_client_get_object_containing_10k_refs (default 10,000).
	ContainedRefs int
	// SpillBytes is how much spill_gigabytes puts through a store a quarter
	// its size, in objects of a 64th of it; the disk floor writes half of
	// it (default 2 GiB).
	SpillBytes int
	// ProfileDir, when set, receives a CPU profile of each metric's measured
	// phase: <metric>.pprof for this process (driver and raylet) and
	// <metric>.worker-<pid>.pprof for each worker process (see
	// ServeWorkerProfiling).
	ProfileDir string
	// Progress, when set, gets a line per metric as it finishes.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.NumCPUs <= 0 {
		c.NumCPUs = runtime.NumCPU()
	}
	if c.PutBytes <= 0 {
		c.PutBytes = 256 << 20
	}
	if c.GetBytes <= 0 {
		c.GetBytes = 1 << 30
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Clients <= 0 {
		c.Clients = 4
	}
	if c.Actors <= 0 {
		c.Actors = c.NumCPUs
	}
	if c.ActorsPerRound <= 0 {
		c.ActorsPerRound = 10
	}
	if c.MemoryActors <= 0 {
		c.MemoryActors = 100
	}
	if c.ContainedRefs <= 0 {
		c.ContainedRefs = 10000
	}
	if c.SpillBytes <= 0 {
		c.SpillBytes = 2 << 30
	}
	return c
}

// Result is one metric's figure.
type Result struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Ratio is Value divided by the floor metric it is compared with
	// (unix_socket_round_trips or memcpy_gigabytes); 0 when there is none.
	Ratio float64 `json:"ratio,omitempty"`
	// Err says why the metric could not be measured.
	Err string `json:"error,omitempty"`

	// Note is a remark shown in the table (e.g. µs per call).
	Note string `json:"-"`
	// Target is the DESIGN.md section 8 target, as text; Met whether this
	// run reached it (nil when there is no target or no figure).
	Target string `json:"-"`
	Met    *bool  `json:"-"`

	ok bool // for the target of the 1 GiB get: the value was not copied
}

// metric is one measurement of the suite.
type metric struct {
	name      string
	unit      string
	cluster   bool   // needs the embedded cluster (rayo.Init)
	crossNode bool   // measured only against a cluster (Config.Address)
	ratioTo   string // the floor metric its ratio is taken to
	// run measures; it returns the value and, optionally, a note.
	run func(e *env) (value float64, note string, err error)
}

// Floor metric names.
const (
	FloorRoundTrips = "unix_socket_round_trips"
	FloorMemcpy     = "memcpy_gigabytes"
)

// suite lists the metrics in the order they run: first those that need a
// quiet machine or a cluster of their own (before Init), then the cluster
// metrics.
var suite = []metric{
	{name: "init_to_first_result", unit: "ms", run: initToFirstResult},
	{name: FloorRoundTrips, unit: "round_trips/s", run: unixSocketRoundTrips},
	{name: FloorMemcpy, unit: "GB/s", run: memcpyGigabytes},
	{name: diskWrite, unit: "GB/s", run: spillFigure(diskWrite)},
	{name: diskRead, unit: "GB/s", run: spillFigure(diskRead)},
	{name: spillMetric, unit: "GB/s", ratioTo: diskWrite, run: spillFigure(spillMetric)},
	{name: restoreMetric, unit: "GB/s", ratioTo: diskRead, run: spillFigure(restoreMetric)},
	{name: "single_client_put_gigabytes_cold", unit: "GB/s", ratioTo: FloorMemcpy, run: putGigabytesCold},
	{name: "single_client_tasks_sync", unit: "tasks/s", cluster: true, ratioTo: FloorRoundTrips, run: tasksSync},
	{name: "single_client_tasks_async", unit: "tasks/s", cluster: true, ratioTo: FloorRoundTrips, run: tasksAsync},
	{name: "multi_client_tasks_async", unit: "tasks/s", cluster: true, ratioTo: FloorRoundTrips, run: multiClientTasksAsync},
	{name: "1_1_actor_calls_sync", unit: "calls/s", cluster: true, ratioTo: FloorRoundTrips, run: actorCallsSync},
	{name: "1_1_actor_calls_async", unit: "calls/s", cluster: true, ratioTo: FloorRoundTrips, run: actorCallsAsync},
	{name: "1_1_actor_calls_concurrent", unit: "calls/s", cluster: true, ratioTo: FloorRoundTrips, run: actorCallsConcurrent},
	{name: "1_n_actor_calls_async", unit: "calls/s", cluster: true, ratioTo: FloorRoundTrips, run: oneToNActorCallsAsync},
	{name: "n_n_actor_calls_async", unit: "calls/s", cluster: true, ratioTo: FloorRoundTrips, run: nToNActorCallsAsync},
	{name: "n_n_actor_calls_with_arg_async", unit: "calls/s", cluster: true, ratioTo: FloorRoundTrips, run: nToNActorCallsWithArgAsync},
	{name: "actor_creation_per_second", unit: "actors/s", cluster: true, ratioTo: FloorRoundTrips, run: actorCreation},
	{name: "single_client_put_calls", unit: "puts/s", cluster: true, ratioTo: FloorRoundTrips, run: putCalls},
	{name: "single_client_get_calls", unit: "gets/s", cluster: true, ratioTo: FloorRoundTrips, run: getCalls},
	{name: "single_client_put_gigabytes", unit: "GB/s", cluster: true, ratioTo: FloorMemcpy, run: putGigabytes},
	{name: "single_client_get_1GiB_float64", unit: "gets/s", cluster: true, run: get1GiBFloat64},
	{name: "single_client_get_1GiB_float64_copied", unit: "GB/s", cluster: true, ratioTo: FloorMemcpy, run: get1GiBFloat64Copied},
	{name: "single_client_wait_1k_refs", unit: "waits/s", cluster: true, run: wait1kRefs},
	{name: "single_client_tasks_and_get_batch", unit: "batches/s", cluster: true, run: tasksAndGetBatch},
	{name: "single_client_get_object_containing_10k_refs", unit: "gets/s", cluster: true, run: getObjectContaining10kRefs},
	{name: "placement_group_create/removal", unit: "groups/s", cluster: true, ratioTo: FloorRoundTrips, run: placementGroupCreateRemoval},
	{name: "memory_per_task_10k_graph", unit: "bytes/task", cluster: true, run: memoryPerTask},
	{name: "memory_per_actor", unit: "bytes/actor", cluster: true, run: memoryPerActor},
	// Across nodes: only against a cluster (--address).
	{name: FloorLoopbackTCP, unit: "GB/s", crossNode: true, run: loopbackTCPGigabytes},
	{name: "cross_node_tasks_sync", unit: "tasks/s", cluster: true, crossNode: true, ratioTo: FloorRoundTrips, run: crossNodeTasksSync},
	{name: "cross_node_tasks_async", unit: "tasks/s", cluster: true, crossNode: true, ratioTo: FloorRoundTrips, run: crossNodeTasksAsync},
	{name: "cross_node_object_gigabytes", unit: "GB/s", cluster: true, crossNode: true, ratioTo: FloorLoopbackTCP, run: crossNodeObjectGigabytes},
}

// Names lists every metric of the suite, in the order it runs.
func Names() []string {
	out := make([]string, len(suite))
	for i, m := range suite {
		out[i] = m.name
	}
	return out
}

// NamesFor lists the metrics a run with cfg measures, in order: without
// an Address, those across nodes are left out.
func NamesFor(cfg Config) []string {
	var out []string
	for _, m := range selected(cfg) {
		out = append(out, m.name)
	}
	return out
}

// selected returns the metrics cfg asks for, with the floors they are
// compared with.
func selected(cfg Config) []metric {
	want := map[string]bool{}
	for _, m := range suite {
		if m.crossNode && cfg.Address == "" {
			continue
		}
		if cfg.Filter == nil || cfg.Filter.MatchString(m.name) {
			want[m.name] = true
			if m.ratioTo != "" {
				want[m.ratioTo] = true
			}
			if t, ok := targets[m.name]; ok && t.relTo != "" {
				want[t.relTo] = true
			}
		}
	}
	var out []metric
	for _, m := range suite {
		if want[m.name] {
			out = append(out, m)
		}
	}
	return out
}

// Run measures the selected metrics and returns their figures, with ratios
// to the floor and DESIGN targets filled in. It starts one embedded cluster
// (rayo.Init with cfg.NumCPUs CPUs) for all cluster metrics and shuts it
// down at the end; the process must not have called rayo.Init. A metric
// that fails is reported with Err set, and the failures are also returned
// together as the error.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg = cfg.withDefaults()
	metrics := selected(cfg)
	e := &env{ctx: ctx, cfg: cfg}
	if cfg.ProfileDir != "" {
		p, err := newProfiler(cfg.ProfileDir)
		if err != nil {
			return nil, err
		}
		e.prof = p
		defer p.close()
	}
	var (
		results []Result
		errs    []error
		inited  bool
	)
	defer func() {
		if inited {
			_ = rayo.Shutdown()
		}
	}()
	for _, m := range metrics {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if m.cluster && !inited {
			var err error
			if inited, err = e.startCluster(); err != nil {
				return results, err
			}
		}
		e.name = m.name
		r := Result{Name: m.name, Unit: m.unit}
		v, note, err := e.measure(m)
		if err != nil {
			r.Err = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
		} else {
			r.Value, r.Note = v, note
			r.ok = e.ok
		}
		results = append(results, r)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%-46s %s\n", m.name, describe(r))
		}
	}
	if inited {
		inited = false
		if err := rayo.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	finish(results)
	return results, errors.Join(errs...)
}

// measure runs one metric with a deadline well past its duration, so that
// a hang in the runtime shows up as a failed metric instead of a stuck run.
func (e *env) measure(m metric) (float64, string, error) {
	limit := 20*e.cfg.Duration + 60*time.Second
	ctx, cancel := context.WithTimeout(e.ctx, limit)
	defer cancel()
	outer := e.ctx
	e.ctx, e.ok = ctx, false
	defer func() { e.ctx = outer }()
	v, note, err := m.run(e)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("did not finish within %v: %w", limit, ctx.Err())
	}
	return v, note, err
}

// startCluster starts the embedded cluster and warms it up: workers are
// started and every code path has run once before anything is timed. It
// reports whether the cluster was started (and must be shut down).
func (e *env) startCluster() (bool, error) {
	if e.prof != nil {
		if err := e.prof.exportToWorkers(); err != nil {
			return false, err
		}
	}
	opts := []rayo.Option{rayo.NumCPUs(float64(e.cfg.NumCPUs)), rayo.LogToDriver(false)}
	if e.cfg.Address != "" {
		opts = append(opts, rayo.Address(e.cfg.Address))
	}
	if err := rayo.Init(opts...); err != nil {
		return false, fmt.Errorf("rayo.Init: %w", err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	for range 3 {
		refs := make([]rayo.Ref[int], 4*e.cfg.NumCPUs)
		for i := range refs {
			refs[i] = noop.Remote()
		}
		if _, err := rayo.GetAll(ctx, refs); err != nil {
			return true, fmt.Errorf("warming up the cluster: %w", err)
		}
	}
	return true, nil
}

// env is what a metric runs with.
type env struct {
	ctx   context.Context
	cfg   Config
	name  string // the metric being measured
	prof  *profiler
	ok    bool          // set by a metric whose target has a condition besides the value
	spill *spillFigures // the spill child's figures, once measured
}

// rate calls op for a short warm-up, then for about cfg.Duration, and
// returns opsPer × calls per second of the timed phase. Only the timed
// phase is profiled.
func (e *env) rate(opsPer float64, op func() error) (float64, error) {
	warm := min(e.cfg.Duration/4, 250*time.Millisecond)
	if _, _, err := e.loop(warm, op); err != nil {
		return 0, err
	}
	if e.prof != nil {
		if err := e.prof.start(e.name); err != nil {
			return 0, err
		}
		defer e.prof.stop()
	}
	return e.rateFor(e.cfg.Duration, opsPer, op)
}

// rateFor calls op for about d and returns opsPer × calls per second.
func (e *env) rateFor(d time.Duration, opsPer float64, op func() error) (float64, error) {
	n, el, err := e.loop(d, op)
	if err != nil {
		return 0, err
	}
	return opsPer * float64(n) / el.Seconds(), nil
}

// loop calls op until d has passed (at least once) and returns the calls
// made and the time taken.
func (e *env) loop(d time.Duration, op func() error) (int, time.Duration, error) {
	start := time.Now()
	for n := 1; ; n++ {
		if err := op(); err != nil {
			return n, time.Since(start), err
		}
		if el := time.Since(start); el >= d {
			return n, el, nil
		}
		if n%64 == 0 && e.ctx.Err() != nil {
			return n, time.Since(start), e.ctx.Err()
		}
	}
}

// finish fills in ratios and targets.
func finish(results []Result) {
	byName := map[string]float64{}
	for _, r := range results {
		if r.Err == "" {
			byName[r.Name] = r.Value
		}
	}
	for i := range results {
		r := &results[i]
		if r.Err != "" {
			continue
		}
		for _, m := range suite {
			if m.name == r.Name && m.ratioTo != "" && byName[m.ratioTo] > 0 {
				r.Ratio = r.Value / byName[m.ratioTo]
			}
		}
		if t, ok := targets[r.Name]; ok {
			r.Target = t.text
			if met, ok := t.met(*r, byName); ok {
				r.Met = &met
			}
		}
	}
}

// target is a DESIGN.md section 8 target.
type target struct {
	text  string
	min   float64 // value ≥ min
	max   float64 // value ≤ max
	relTo string  // value ≥ relMin × that metric's value
	rel   float64
	cond  bool // also needs Result.ok
}

func (t target) met(r Result, byName map[string]float64) (bool, bool) {
	ok := true
	switch {
	case t.relTo != "":
		base, have := byName[t.relTo]
		if !have {
			return false, false
		}
		ok = r.Value >= t.rel*base
	case t.max > 0:
		ok = r.Value <= t.max
	case t.min > 0:
		ok = r.Value >= t.min
	default:
		return false, false
	}
	if t.cond {
		ok = ok && r.ok
	}
	return ok, true
}

// targets are DESIGN.md section 8's, for 2 cores. The 1 GiB get's is its
// "microseconds, not a copy", read as at most 100 µs per Get.
var targets = map[string]target{
	"init_to_first_result":                         {text: "< 300 ms", max: 300},
	FloorRoundTrips:                                {text: "floor (DESIGN ≈30,000 unpinned)"},
	FloorMemcpy:                                    {text: "floor (≈12)"},
	diskWrite:                                      {text: "floor"},
	diskRead:                                       {text: "floor"},
	spillMetric:                                    {text: "≥ 0.5 × disk write", relTo: diskWrite, rel: 0.5},
	restoreMetric:                                  {text: "≥ 0.5 × disk read", relTo: diskRead, rel: 0.5},
	"single_client_tasks_sync":                     {text: "≥ 10,000", min: 10000},
	"single_client_tasks_async":                    {text: "≥ 50,000", min: 50000},
	"multi_client_tasks_async":                     {text: "≥ 50,000", min: 50000},
	"1_1_actor_calls_sync":                         {text: "≥ 10,000", min: 10000},
	"1_1_actor_calls_async":                        {text: "≥ 50,000", min: 50000},
	"n_n_actor_calls_async":                        {text: "≥ 50,000", min: 50000},
	"single_client_put_calls":                      {text: "≥ 100,000", min: 100000},
	"single_client_get_calls":                      {text: "≥ 200,000", min: 200000},
	"single_client_put_gigabytes":                  {text: "≥ 0.7 × memcpy", relTo: FloorMemcpy, rel: 0.7},
	"single_client_get_1GiB_float64":               {text: "zero-copy (GetView), ≥ 10,000", min: 10000, cond: true},
	"single_client_get_1GiB_float64_copied":        {text: "reported: what the copy costs"},
	"single_client_put_gigabytes_cold":             {text: "≥ 0.5 × memcpy", relTo: FloorMemcpy, rel: 0.5},
	"single_client_wait_1k_refs":                   {text: "≥ 500", min: 500},
	"single_client_tasks_and_get_batch":            {text: "≥ 50", min: 50},
	"single_client_get_object_containing_10k_refs": {text: "≥ 100", min: 100},
	"placement_group_create/removal":               {text: "≥ 5,000", min: 5000},
	"memory_per_task_10k_graph":                    {text: "reported"},
	"memory_per_actor":                             {text: "≤ 50 KB", max: 50000},
	FloorLoopbackTCP:                               {text: "floor"},
	"cross_node_object_gigabytes":                  {text: "≥ 0.5 × loopback TCP", relTo: FloorLoopbackTCP, rel: 0.5},
}
