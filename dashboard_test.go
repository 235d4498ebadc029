package rayo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/dashboard/web/webtest"
)

// apiGet fetches path from the embedded cluster's API server and decodes
// its JSON into v; it returns the status code.
func apiGet(t *testing.T, path string, v any) int {
	t.Helper()
	base := DashboardURL()
	if base == "" {
		t.Fatal("the embedded cluster has no API server")
	}
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode
}

type apiList struct {
	Total       int              `json:"total"`
	NumFiltered int              `json:"num_filtered"`
	Warnings    []string         `json:"warnings"`
	Result      []map[string]any `json:"result"`
}

// waitList polls a list until it has a record with field == value whose
// owner's and worker's parts both arrived (a name and a node).
func waitList(t *testing.T, path, field, value string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var l apiList
		if code := apiGet(t, path, &l); code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		for _, r := range l.Result {
			if fmt.Sprint(r[field]) == value && r["name"] != "" && r["node_id"] != "" {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no record with %s=%s within 10s: %v", path, field, value, l.Result)
		}
		time.Sleep(50 * time.Millisecond) // events reach the table every 200 ms
	}
}

func TestStateAPI(t *testing.T) {
	ctx := ctxT(t)
	ok := add.Remote(V(1), V(2))
	bad := fails.Remote(V("state api failure"))
	if _, err := Get(ctx, ok); err != nil {
		t.Fatal(err)
	}
	_, _ = Get(ctx, bad)
	okID, badID := ok.ID()[:32], bad.ID()[:32]

	checkStateAPITasks(t, okID, badID)
	checkStateAPINodesAndJobs(t)
	checkStateAPIPagesAndSummary(t)
	checkStateAPIBadInput(t)
	checkStateAPITimeline(t, okID)
	checkStateAPIMetrics(t)
}

// checkStateAPITasks checks that the task list, filtered by state, holds
// the failed task with its error and the finished one, and that the
// finished one can be fetched alone.
func checkStateAPITasks(t *testing.T, okID, badID string) {
	t.Helper()
	rec := waitList(t, "/api/v0/tasks?limit=10000&filter="+url.QueryEscape("state=FAILED"), "task_id", badID)
	if !strings.Contains(fmt.Sprint(rec["error_message"]), "state api failure") || rec["node_id"] != NodeID() {
		t.Errorf("failed task: %v", rec)
	}
	waitList(t, "/api/v0/tasks?limit=10000&filter="+url.QueryEscape("state!=FAILED"), "task_id", okID)

	var one struct{ Result []map[string]any }
	if code := apiGet(t, "/api/v0/tasks/"+okID, &one); code != http.StatusOK || len(one.Result) != 1 || one.Result[0]["state"] != "FINISHED" {
		t.Fatalf("one task: %d %v", code, one.Result)
	}
}

// checkStateAPINodesAndJobs checks that this node is listed alive and this
// driver's job running.
func checkStateAPINodesAndJobs(t *testing.T) {
	t.Helper()
	var nodes apiList
	apiGet(t, "/api/v0/nodes", &nodes)
	if len(nodes.Result) != 1 || nodes.Result[0]["node_id"] != NodeID() || nodes.Result[0]["state"] != "ALIVE" {
		t.Fatalf("nodes: %v", nodes.Result)
	}
	var jobs apiList
	apiGet(t, "/api/v0/jobs", &jobs)
	if len(jobs.Result) != 1 || jobs.Result[0]["status"] != "RUNNING" {
		t.Fatalf("jobs: %v", jobs.Result)
	}
}

// checkStateAPIPagesAndSummary checks that two pages of one task each are
// different tasks, and that the task summary counts them.
func checkStateAPIPagesAndSummary(t *testing.T) {
	t.Helper()
	// Pagination: two pages of one task each are different tasks.
	var p1, p2 apiList
	apiGet(t, "/api/v0/tasks?limit=1&offset=0", &p1)
	apiGet(t, "/api/v0/tasks?limit=1&offset=1", &p2)
	if len(p1.Result) != 1 || len(p2.Result) != 1 || p1.Result[0]["task_id"] == p2.Result[0]["task_id"] || p1.NumFiltered < 2 {
		t.Fatalf("pages: %v / %v", p1, p2)
	}

	var sum struct {
		Total   int
		Summary map[string]struct {
			StateCounts map[string]int `json:"state_counts"`
		}
	}
	apiGet(t, "/api/v0/tasks/summarize", &sum)
	if sum.Total < 2 || len(sum.Summary) == 0 {
		t.Fatalf("summary: %+v", sum)
	}
}

// checkStateAPIBadInput checks that bad input gets a clear error and the
// right status.
func checkStateAPIBadInput(t *testing.T) {
	t.Helper()
	var e struct{ Error string }
	for path, want := range map[string]int{
		"/api/v0/tasks?filter=nosuchfield=1": http.StatusBadRequest,
		"/api/v0/tasks?filter=noequals":      http.StatusBadRequest,
		"/api/v0/tasks?limit=0":              http.StatusBadRequest,
		"/api/v0/gizmos":                     http.StatusBadRequest,
		"/api/v0/tasks/00112233":             http.StatusNotFound,
		"/api/v0/actors/zz":                  http.StatusBadRequest,
	} {
		e.Error = ""
		if code := apiGet(t, path, &e); code != want || e.Error == "" {
			t.Errorf("GET %s: %d %q, want %d and an error", path, code, e.Error, want)
		}
	}
}

// checkStateAPITimeline checks that the timeline is a Chrome trace with a
// complete event, with times, for task okID.
func checkStateAPITimeline(t *testing.T, okID string) {
	t.Helper()
	var trace []map[string]any
	apiGet(t, "/api/v0/timeline", &trace)
	found := false
	for _, ev := range trace {
		if ev["ph"] == "X" && ev["args"].(map[string]any)["task_id"] == okID {
			found = ev["ts"].(float64) > 0 && ev["dur"].(float64) > 0
		}
	}
	if !found {
		t.Errorf("no complete event for task %s in the timeline", okID)
	}
}

// checkStateAPIMetrics checks that the Prometheus metrics hold the task,
// object store, scheduling and worker series.
func checkStateAPIMetrics(t *testing.T) {
	t.Helper()
	resp, err := http.Get(DashboardURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`rayo_tasks{state="FINISHED"}`, `rayo_tasks{state="FAILED"}`, "rayo_object_store_capacity_bytes", "rayo_scheduling_latency_seconds_bucket", `rayo_workers{`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The web dashboard, in a real headless Chromium, shows a running task, a
// live actor and a failed task's error from this cluster.
func TestDashboardInBrowser(t *testing.T) {
	ctx := ctxT(t)
	b := webtest.Start(t)
	slow := sleepMs.Remote(V(4000))
	a := newCounter.Options(Name("browser-actor")).Remote()
	if _, err := Get(ctx, incr.Remote(a)); err != nil {
		t.Fatal(err)
	}
	bad := fails.Remote(V("shown in the browser"))
	_, _ = Get(ctx, bad)

	const wait = 10 * time.Second
	if err := b.Navigate(DashboardURL() + "/#/tasks"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitText("#page td .badge", "RUNNING", wait); err != nil {
		t.Fatalf("the running task: %v", err)
	}
	if err := b.WaitText("details.error summary", "shown in the browser", wait); err != nil {
		t.Fatalf("the failed task's error: %v", err)
	}
	if err := b.Navigate(DashboardURL() + "/#/actors"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitText("#page td", "browser-actor", wait); err != nil {
		t.Fatalf("the actor: %v", err)
	}
	if err := b.WaitText("#page td .badge", "ALIVE", wait); err != nil {
		t.Fatalf("the actor alive: %v", err)
	}
	for _, page := range []string{"", "#/jobs", "#/logs", "#/timeline"} {
		if err := b.Navigate(DashboardURL() + "/" + page); err != nil {
			t.Fatal(err)
		}
	}
	b.CheckNoProblems(t)
	_, _ = Get(ctx, slow)
}

var shout = Func1(func(s string) int { fmt.Println(s); return len(s) })

func TestStateAPIWorkersObjectsAndLogs(t *testing.T) {
	ctx := ctxT(t)
	r := shout.Remote(V("a line for the state api"))
	if _, err := Get(ctx, r); err != nil {
		t.Fatal(err)
	}
	big := Put(ctx, make([]float64, 1<<16)) // 512 KiB: in the store
	defer big.Release()
	small := Put(ctx, "kept by its owner") // inline: in the driver's memory
	defer small.Release()

	task := waitList(t, "/api/v0/tasks?limit=10000", "task_id", r.ID()[:32])
	var workers apiList
	apiGet(t, "/api/v0/workers?filter=state!=DEAD", &workers)
	found := false
	for _, w := range workers.Result {
		found = found || w["pid"] == task["worker_pid"]
	}
	if !found {
		t.Errorf("worker %v of the task not among the live workers %v", task["worker_pid"], workers.Result)
	}
	// This process is listed too, as the driver.
	var drivers apiList
	apiGet(t, "/api/v0/workers?filter=worker_type=DRIVER", &drivers)
	if len(drivers.Result) != 1 || drivers.Result[0]["pid"] != float64(os.Getpid()) || drivers.Result[0]["state"] != "ALIVE" {
		t.Errorf("drivers listed: %v, want this process (pid %d)", drivers.Result, os.Getpid())
	}

	var objs apiList
	apiGet(t, "/api/v0/objects?limit=10000", &objs)
	found = false
	for _, o := range objs.Result {
		if o["object_id"] == big.ID() {
			found = o["object_size_bytes"].(float64) >= 512<<10 && fmt.Sprint(o["locations"]) == "["+NodeID()+"]" &&
				o["reference_count"].(float64) == 1 && o["owner_address"] != ""
		}
	}
	if !found {
		t.Errorf("the put object %s is not listed with its size, node, owner and one reference: %v", big.ID(), objs.Result)
	}
	found = false
	for _, o := range objs.Result {
		if o["object_id"] == small.ID() {
			found = o["kind"] == "INLINE" && fmt.Sprint(o["locations"]) == "[]" && o["reference_count"].(float64) == 1
		}
	}
	if !found {
		t.Errorf("the small put object %s is not listed as kept inline by its owner", small.ID())
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(DashboardURL() + "/api/v0/logs?task_id=" + r.ID()[:32] + "&lines=50")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(string(body), "a line for the state api") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task's log: %s %s", resp.Status, body)
		}
		time.Sleep(50 * time.Millisecond) // the raylet copies the worker's output on its own
	}
	var e struct{ Error string }
	if code := apiGet(t, "/api/v0/logs?pid=1", &e); code != http.StatusNotFound || e.Error == "" {
		t.Errorf("log of an unknown worker: %d %q", code, e.Error)
	}
}
