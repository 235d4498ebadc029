// Package metrics defines rayo's Prometheus metrics and serves them.
//
// Each raylet has a Node: its object store, workers, resources, scheduling
// and execution latencies and the bytes it moved to and from other nodes,
// plus the tasks and actors by state that its state table knows (all of
// them in an embedded cluster; the cluster's, from the control store, on
// the head's API server). Names follow Prometheus's conventions: a rayo_
// prefix, base units in the name, _total on counters.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NodeSource is what a Node reads at each scrape.
type NodeSource struct {
	// Store gives the object store's bytes used, capacity and objects.
	Store func() (used, capacity, objects int64)
	// Workers counts worker processes by state (IDLE, LEASED, ACTOR, ...).
	Workers func() map[string]int
	// Resources gives the node's total and available resources.
	Resources func() (total, available map[string]float64)
	// Tasks and Actors count records by state; nil when the node has no
	// state table of its own.
	Tasks  func() map[string]int
	Actors func() map[string]int
	// Spill gives the node's spilling figures; nil when it has none.
	Spill func() Spill
}

// Spill is what a node has spilled to disk and read back.
type Spill struct {
	Objects, Bytes                 int64 // on disk now
	SpilledObjects, SpilledBytes   int64 // written since start
	RestoredObjects, RestoredBytes int64 // read back since start
}

// Node is the metrics of one raylet, in a registry of its own (several
// raylets may share a process in tests).
type Node struct {
	// Registry gathers everything below, and the Go runtime's metrics.
	Registry *prometheus.Registry
	// SchedulingLatency is how long a lease request waited for a worker.
	SchedulingLatency prometheus.Histogram
	// BytesIn and BytesOut count object bytes pulled from and served to
	// other nodes.
	BytesIn, BytesOut prometheus.Counter
	// TasksFinished counts task attempts that ended on this node, by state
	// (FINISHED or FAILED).
	TasksFinished *prometheus.CounterVec
	// SpillSeconds and RestoreSeconds are how long spilling a batch of
	// objects to disk, and restoring one, took.
	SpillSeconds, RestoreSeconds prometheus.Histogram
	// exec is how long tasks ran on this node's workers, as they tally it
	// (AddRuns).
	exec execHistogram
}

// latencyBuckets spans 50 µs to about 100 s.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 4, 12)

// ExecBuckets are the upper bounds, in seconds, of the task execution
// histogram's buckets. Workers tally their runs in them (BucketOf).
var ExecBuckets = latencyBuckets

// BucketOf is the index of the bucket of ExecBuckets a run of d seconds
// falls in: len(ExecBuckets) when it is longer than all of them.
func BucketOf(d float64) int {
	i, _ := slices.BinarySearch(ExecBuckets, d)
	return i
}

// AddRuns adds what a worker tallied: attempts finished and failed, how
// many ran within each bucket of ExecBuckets (not cumulative; one more
// entry for longer runs), and their run time in all.
//
// A count that is negative or past maxRunsPerTally (more than a worker
// runs between two tallies, every 200 ms) is a forgery or a bug: it adds
// nothing.
func (n *Node) AddRuns(finished, failed int64, buckets []int64, seconds float64) {
	if finished > 0 && finished <= maxRunsPerTally {
		n.TasksFinished.WithLabelValues("FINISHED").Add(float64(finished))
	}
	if failed > 0 && failed <= maxRunsPerTally {
		n.TasksFinished.WithLabelValues("FAILED").Add(float64(failed))
	}
	n.exec.add(buckets, seconds)
}

// maxRunsPerTally bounds each count of one tally (AddRuns).
const maxRunsPerTally = 1 << 24

// maxRunSecondsPerTally bounds the run time of one tally: a worker cannot
// have run for more than a day between two tallies.
const maxRunSecondsPerTally = 86400

// execHistogram is a histogram filled from bucket counts rather than one
// observation at a time.
type execHistogram struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	counts []uint64 // per bucket of ExecBuckets, and one for longer runs
	sum    float64
}

// add counts a tally; a malformed one (negative counts or time, NaN) adds
// nothing where it is wrong.
func (h *execHistogram) add(buckets []int64, seconds float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range buckets {
		if c > 0 && c <= maxRunsPerTally {
			h.counts[min(i, len(h.counts)-1)] += uint64(c)
		}
	}
	if seconds > 0 && seconds <= maxRunSecondsPerTally {
		h.sum += seconds
	}
}

// Describe sends the histogram's one description.
func (h *execHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect sends the histogram as it stands, its buckets made cumulative.
func (h *execHistogram) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cum := make(map[float64]uint64, len(ExecBuckets))
	var n uint64
	for i, bound := range ExecBuckets {
		n += h.counts[i]
		cum[bound] = n
	}
	n += h.counts[len(ExecBuckets)]
	ch <- prometheus.MustNewConstHistogram(h.desc, n, h.sum, cum)
}

// NewNode makes the metrics of a node named node.
func NewNode(node string, src NodeSource) *Node {
	labels := prometheus.Labels{"node_id": node}
	n := &Node{
		Registry: prometheus.NewRegistry(),
		SchedulingLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rayo_scheduling_latency_seconds", Help: "Time a lease request waited for a worker on this node.",
			Buckets: latencyBuckets, ConstLabels: labels,
		}),
		BytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rayo_object_transfer_bytes_total", Help: "Object bytes moved between this node and others.",
			ConstLabels: prometheus.Labels{"node_id": node, "direction": "in"},
		}),
		BytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rayo_object_transfer_bytes_total", Help: "Object bytes moved between this node and others.",
			ConstLabels: prometheus.Labels{"node_id": node, "direction": "out"},
		}),
		TasksFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rayo_tasks_finished_total", Help: "Task attempts that ended on this node, by final state.",
			ConstLabels: labels,
		}, []string{"state"}),
	}
	n.exec = execHistogram{
		desc:   prometheus.NewDesc("rayo_task_execution_seconds", "Time tasks ran on this node's workers.", nil, labels),
		counts: make([]uint64, len(ExecBuckets)+1),
	}
	n.SpillSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "rayo_object_spill_seconds", Help: "Time to write one batch of objects to the spill folder.",
		Buckets: latencyBuckets, ConstLabels: labels,
	})
	n.RestoreSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "rayo_object_restore_seconds", Help: "Time to read one spilled object back into memory.",
		Buckets: latencyBuckets, ConstLabels: labels,
	})
	n.Registry.MustRegister(n.SpillSeconds, n.RestoreSeconds, n.SchedulingLatency, &n.exec, n.BytesIn, n.BytesOut, n.TasksFinished,
		&nodeCollector{node: node, src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return n
}

var (
	storeUsedDesc  = prometheus.NewDesc("rayo_object_store_used_bytes", "Bytes of the node's object store in use.", []string{"node_id"}, nil)
	storeCapDesc   = prometheus.NewDesc("rayo_object_store_capacity_bytes", "Capacity of the node's object store.", []string{"node_id"}, nil)
	storeObjsDesc  = prometheus.NewDesc("rayo_object_store_objects", "Objects in the node's object store.", []string{"node_id"}, nil)
	workersDesc    = prometheus.NewDesc("rayo_workers", "Worker processes of the node, by state.", []string{"node_id", "state"}, nil)
	resTotalDesc   = prometheus.NewDesc("rayo_resource_capacity", "Resources the node offers.", []string{"node_id", "resource"}, nil)
	resAvailDesc   = prometheus.NewDesc("rayo_resource_available", "Resources of the node not in use.", []string{"node_id", "resource"}, nil)
	tasksDesc      = prometheus.NewDesc("rayo_tasks", "Task attempts known to the state table, by state.", []string{"state"}, nil)
	actorsDesc     = prometheus.NewDesc("rayo_actors", "Actors known to the state table, by state.", []string{"state"}, nil)
	spilledObjsNow = prometheus.NewDesc("rayo_object_spilled_objects", "Objects of the node spilled to disk now.", []string{"node_id"}, nil)
	spilledNow     = prometheus.NewDesc("rayo_object_spilled_bytes", "Bytes of the node's objects spilled to disk now.", []string{"node_id"}, nil)
	spilledObjs    = prometheus.NewDesc("rayo_object_spilled_objects_total", "Objects written to the spill folder.", []string{"node_id"}, nil)
	spilledBytes   = prometheus.NewDesc("rayo_object_spilled_bytes_total", "Object bytes written to the spill folder.", []string{"node_id"}, nil)
	restoredObjs   = prometheus.NewDesc("rayo_object_restored_objects_total", "Spilled objects read back.", []string{"node_id"}, nil)
	restoredBytes  = prometheus.NewDesc("rayo_object_restored_bytes_total", "Spilled object bytes read back (restores and pulls).", []string{"node_id"}, nil)
	errNoListener  = errors.New("metrics: no address to listen on")
	scrapeDeadline = 10 * time.Second
)

// nodeCollector reads a node's gauges at scrape time.
type nodeCollector struct {
	node string
	src  NodeSource
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storeUsedDesc, storeCapDesc, storeObjsDesc, workersDesc, resTotalDesc, resAvailDesc,
		spilledObjsNow, spilledNow, spilledObjs, spilledBytes, restoredObjs, restoredBytes} {
		ch <- d
	}
	DescribeStateCounts(ch)
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Store != nil {
		used, capacity, objects := c.src.Store()
		ch <- prometheus.MustNewConstMetric(storeUsedDesc, prometheus.GaugeValue, float64(used), c.node)
		ch <- prometheus.MustNewConstMetric(storeCapDesc, prometheus.GaugeValue, float64(capacity), c.node)
		ch <- prometheus.MustNewConstMetric(storeObjsDesc, prometheus.GaugeValue, float64(objects), c.node)
	}
	if c.src.Workers != nil {
		for state, n := range c.src.Workers() {
			ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(n), c.node, state)
		}
	}
	if c.src.Resources != nil {
		total, avail := c.src.Resources()
		for name, q := range total {
			ch <- prometheus.MustNewConstMetric(resTotalDesc, prometheus.GaugeValue, q, c.node, name)
		}
		for name, q := range avail {
			ch <- prometheus.MustNewConstMetric(resAvailDesc, prometheus.GaugeValue, q, c.node, name)
		}
	}
	if c.src.Spill != nil {
		sp := c.src.Spill()
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v int64
		}{
			{spilledObjsNow, prometheus.GaugeValue, sp.Objects}, {spilledNow, prometheus.GaugeValue, sp.Bytes},
			{spilledObjs, prometheus.CounterValue, sp.SpilledObjects}, {spilledBytes, prometheus.CounterValue, sp.SpilledBytes},
			{restoredObjs, prometheus.CounterValue, sp.RestoredObjects}, {restoredBytes, prometheus.CounterValue, sp.RestoredBytes},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, m.t, float64(m.v), c.node)
		}
	}
	StateCounts(ch, c.src.Tasks, c.src.Actors)
}

// DescribeStateCounts sends the descriptions of the metrics StateCounts
// sends: a collector of them describes itself without collecting, which
// would ask the cluster for its tasks as the collector is registered.
func DescribeStateCounts(ch chan<- *prometheus.Desc) {
	ch <- tasksDesc
	ch <- actorsDesc
}

// StateCounts sends rayo_tasks and rayo_actors by state, from the counts
// tasks and actors give (either may be nil).
func StateCounts(ch chan<- prometheus.Metric, tasks, actors func() map[string]int) {
	if tasks != nil {
		for state, n := range tasks() {
			ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), state)
		}
	}
	if actors != nil {
		for state, n := range actors() {
			ch <- prometheus.MustNewConstMetric(actorsDesc, prometheus.GaugeValue, float64(n), state)
		}
	}
}

// Handler serves the metrics of g in Prometheus's text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: scrapeDeadline})
}

// Server serves /metrics on its own port (a raylet's).
type Server struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// Serve listens on addr (HOST:PORT; port 0 picks one) and serves g at
// /metrics until Close.
func Serve(addr string, g prometheus.Gatherer) (*Server, error) {
	if addr == "" {
		return nil, errNoListener
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	// GET (and HEAD) only: no 2xx answer to CONNECT (GO-2026-6613).
	mux.Handle("GET /metrics", Handler(g))
	s := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: scrapeDeadline + 5*time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
			Protocols: http1Only()},
		addr: ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits for it.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// http1Only is HTTP/1.1 alone: Go 1.26.8's HTTP/2 server has known flaws
// (GO-2026-6617, -6612, -6611, -6603) and a scrape needs none of HTTP/2.
func http1Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}
