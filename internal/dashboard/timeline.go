package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rayo-dev/rayo/internal/metrics"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// The timeline endpoint and the metrics of the cluster's state.

// traceEvent is one event of the Chrome trace format.
type traceEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   int64          `json:"ts"`
	Dur  int64          `json:"dur,omitempty"`
	Pid  int            `json:"pid"` // the node, numbered (process_name events name them)
	Tid  int32          `json:"tid"` // the worker's pid (thread_name events name them)
	Args map[string]any `json:"args,omitempty"`
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	l, err := s.cfg.Source.Tasks(ctx, &pb.StateQuery{})
	if err != nil {
		sourceErr(w, err)
		return
	}
	job := r.URL.Query().Get("job_id")
	now := time.Now().UnixNano()
	ran := func(tr *pb.TaskRecord) bool {
		return tr.StateTimesUnixNs[tasktable.TaskRunning] != 0 && (job == "" || tr.Task.JobId == job)
	}
	// Trace viewers (Perfetto) want integer pids: the nodes are numbered
	// in the order of their IDs, and named by metadata events.
	var nodes []string
	for _, tr := range l.Tasks {
		if ran(tr) && !slices.Contains(nodes, tr.Task.NodeId) {
			nodes = append(nodes, tr.Task.NodeId)
		}
	}
	sort.Strings(nodes)
	events := make([]traceEvent, 0, len(nodes)+len(l.Tasks))
	pids := make(map[string]int, len(nodes))
	for i, n := range nodes {
		pids[n] = i + 1
		events = append(events, traceEvent{Name: "process_name", Ph: "M", Pid: i + 1, Args: map[string]any{"name": "node " + n}})
	}
	type thread struct {
		pid int
		tid int32
	}
	named := map[thread]bool{}
	for _, tr := range l.Tasks {
		t := tr.Task
		if !ran(tr) {
			continue
		}
		start := tr.StateTimesUnixNs[tasktable.TaskRunning]
		end := tr.StateTimesUnixNs[tasktable.TaskFinished]
		if end == 0 {
			end = tr.StateTimesUnixNs[tasktable.TaskFailed]
		}
		if end == 0 {
			end = now // still running
		}
		pid := pids[t.NodeId]
		if th := (thread{pid, t.WorkerPid}); !named[th] {
			named[th] = true
			events = append(events, traceEvent{Name: "thread_name", Ph: "M", Pid: pid, Tid: t.WorkerPid, Args: map[string]any{"name": fmt.Sprintf("worker %d", t.WorkerPid)}})
		}
		events = append(events, traceEvent{
			Name: t.Name, Cat: t.Type, Ph: "X", Ts: start / 1e3, Dur: max((end-start)/1e3, 1), Pid: pid, Tid: t.WorkerPid,
			Args: map[string]any{"task_id": hexOf(t.TaskId), "attempt": t.Attempt, "state": t.State, "job_id": t.JobId},
		})
	}
	reply(w, events)
}

// stateCollector exports the cluster's tasks and actors by state.
type stateCollector struct{ src Source }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { metrics.DescribeStateCounts(ch) }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	tasks := func() map[string]int {
		out := map[string]int{}
		if l, err := c.src.Tasks(ctx, &pb.StateQuery{}); err == nil {
			for _, t := range l.Tasks {
				out[t.Task.State]++
			}
		}
		return out
	}
	actors := func() map[string]int {
		out := map[string]int{}
		if l, err := c.src.Actors(ctx, &pb.StateQuery{}); err == nil {
			for _, a := range l.Actors {
				out[a.Actor.State]++
			}
		}
		return out
	}
	metrics.StateCounts(ch, tasks, actors)
}
