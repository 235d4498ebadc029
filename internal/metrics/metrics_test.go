package metrics

import (
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func testNode() *Node {
	return NewNode("abc123", NodeSource{
		Store:   func() (int64, int64, int64) { return 1 << 20, 1 << 30, 3 },
		Workers: func() map[string]int { return map[string]int{"IDLE": 2, "LEASED": 1} },
		Resources: func() (map[string]float64, map[string]float64) {
			return map[string]float64{"CPU": 2}, map[string]float64{"CPU": 1}
		},
		Tasks:  func() map[string]int { return map[string]int{"RUNNING": 4, "FINISHED": 7} },
		Actors: func() map[string]int { return map[string]int{"ALIVE": 1} },
	})
}

func TestNodeMetricsServedAndNamedByConvention(t *testing.T) {
	n := testNode()
	n.SchedulingLatency.Observe(0.002)
	// A worker's tally: one run of 40 µs, two of about 1 ms, one of
	// 200 s (past the last bucket); one of them failed.
	buckets := make([]int64, len(ExecBuckets)+1)
	buckets[BucketOf(40e-6)]++
	buckets[BucketOf(0.001)] += 2
	buckets[BucketOf(200)]++
	n.AddRuns(3, 1, buckets, 40e-6+0.002+200)
	// Malformed tallies change nothing.
	n.AddRuns(-5, -1, []int64{-3, -1}, math.NaN())
	n.AddRuns(0, 0, nil, math.Inf(1))
	n.AddRuns(0, 0, nil, -7)
	// Forged ones too: counts and times no worker reaches between tallies.
	n.AddRuns(100777761280, 1<<40, []int64{1 << 40}, 1e12)
	n.BytesIn.Add(4096)
	s, err := Serve("127.0.0.1:0", n.Registry)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`rayo_object_store_used_bytes{node_id="abc123"} 1.048576e+06`,
		`rayo_object_store_capacity_bytes{node_id="abc123"} 1.073741824e+09`,
		`rayo_workers{node_id="abc123",state="IDLE"} 2`,
		`rayo_resource_available{node_id="abc123",resource="CPU"} 1`,
		`rayo_tasks{state="RUNNING"} 4`,
		`rayo_actors{state="ALIVE"} 1`,
		`rayo_object_transfer_bytes_total{direction="in",node_id="abc123"} 4096`,
		`rayo_tasks_finished_total{node_id="abc123",state="FAILED"} 1`,
		`rayo_tasks_finished_total{node_id="abc123",state="FINISHED"} 3`,
		`rayo_task_execution_seconds_bucket{node_id="abc123",le="5e-05"} 1`,
		`rayo_task_execution_seconds_bucket{node_id="abc123",le="0.0032"} 3`,
		`rayo_task_execution_seconds_bucket{node_id="abc123",le="+Inf"} 4`,
		`rayo_task_execution_seconds_count{node_id="abc123"} 4`,
		`rayo_scheduling_latency_seconds_count{node_id="abc123"} 1`,
		`rayo_task_execution_seconds_sum{node_id="abc123"} 200.00204`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "rayo_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestServeNeedsAnAddress(t *testing.T) {
	if _, err := Serve("", testNode().Registry); err == nil {
		t.Fatal("Serve with no address succeeded")
	}
	if _, err := Serve("256.0.0.1:99999", testNode().Registry); err == nil {
		t.Fatal("Serve on a bad address succeeded")
	}
}
