package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/node"
)

const (
	taskOK     = "ffee0011223344550000000000000001" // tasks of one process share their first 16 characters
	taskFailed = "ffee0011223344550000000000000002"
	nodeA      = "0123456789ab"
)

// failedStack is the error message, with its remote stack, of taskFailed's
// last attempt.
const failedStack = "panic: divide by zero\n\ngoroutine 7 [running]:\nmain.divide(0x1, 0x0)\n\t/src/app/main.go:42 +0x1d\nrayo.(*worker).run(...)\n\t/src/rayo/worker.go:311"

// fakeAPI is a state API server that answers per docs/state-api.md and
// records the queries it gets.
type fakeAPI struct {
	*httptest.Server
	mu       sync.Mutex    // protects requests
	requests []*url.URL    // every request, in order
	logStep  chan struct{} // closed by the test to let a followed log go on
}

// newFakeAPI starts a fakeAPI; it is closed when the test ends.
func newFakeAPI(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{logStep: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v0/tasks", serveFakeTasks)
	mux.HandleFunc("GET /api/v0/nodes", serveFakeNodes)
	mux.HandleFunc("GET /api/v0/nodes/{id}", serveFakeNode)
	mux.HandleFunc("GET /api/v0/workers", serveFakeWorkers)
	mux.HandleFunc("GET /api/v0/actors", serveFakeActors)
	mux.HandleFunc("GET /api/v0/placement_groups", serveFakePlacementGroups)
	mux.HandleFunc("GET /api/v0/tasks/summarize", serveFakeTaskSummary)
	mux.HandleFunc("GET /api/v0/objects/summarize", serveFakeObjectSummary)
	mux.HandleFunc("GET /api/v0/tasks/{id}", serveFakeTask)
	mux.HandleFunc("GET /api/v0/logs", f.serveFakeLogs)
	mux.HandleFunc("GET /api/v0/timeline", serveFakeTimeline)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.URL)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// serveFakeTasks answers a task list: one failed, one finished and one
// pending task, with 12 records dropped.
func serveFakeTasks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"total": 1200, "num_filtered": 40, "offset": 0, "limit": 100, "dropped": 12,
		"warnings": []string{"12 finished tasks were dropped (--max-task-records 10000)"},
		"result": []map[string]any{
			{"task_id": taskFailed, "attempt_number": 1, "name": "divide", "state": "FAILED", "type": "NORMAL_TASK",
				"node_id": nodeA, "worker_pid": 4242, "error_type": "TASK_EXECUTION_EXCEPTION", "error_message": failedStack,
				"creation_time_ms": 1763800000000},
			{"task_id": taskOK, "attempt_number": 0, "name": "square", "state": "FINISHED", "type": "NORMAL_TASK",
				"node_id": nodeA, "worker_pid": 4243, "error_type": "", "creation_time_ms": 1763700000000},
			{"task_id": "99", "attempt_number": 0, "name": "pending", "state": "PENDING_NODE_ASSIGNMENT", "type": "NORMAL_TASK",
				"node_id": "", "worker_pid": 0},
		},
	})
}

// serveFakeNodes answers a node list: nodeA, the head, alone.
func serveFakeNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"total": 1, "num_filtered": 1, "offset": 0, "limit": 100, "dropped": 0,
		"result": []map[string]any{{"node_id": nodeA, "address": "127.0.0.1:6380", "state": "ALIVE", "is_head_node": true,
			"cpu_percent": 12.5, "mem_used_bytes": 3 << 30, "mem_total_bytes": 16 << 30,
			"object_store_used_bytes": 1 << 20, "object_store_capacity_bytes": 2 << 30,
			"resources_total": map[string]float64{"CPU": 4}}},
	})
}

// serveFakeNode answers for nodeA, and 404 for any other node.
func serveFakeNode(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != nodeA {
		writeJSON(w, 404, map[string]string{"error": "node " + r.PathValue("id") + " not found"})
		return
	}
	writeJSON(w, 200, map[string]any{"result": []map[string]any{{"node_id": nodeA, "state": "ALIVE"}}})
}

// serveFakeWorkers answers a worker list of three workers and a driver,
// kept by the request's filters (key=value, matched exactly).
func serveFakeWorkers(w http.ResponseWriter, r *http.Request) {
	all := []map[string]any{
		{"worker_id": "77aa", "node_id": nodeA, "pid": 4242, "worker_type": "WORKER", "state": "LEASED", "actor_id": "",
			"log_file": "/tmp/rayo/s-1/logs/worker-4242.log"},
		{"worker_id": "88bb", "node_id": nodeA, "pid": 4243, "worker_type": "WORKER", "state": "ACTOR", "actor_id": taskOK,
			"log_file": "/tmp/rayo/s-1/logs/worker-4243.log"},
		{"worker_id": "99cc", "node_id": "ba9876543210", "pid": 5151, "worker_type": "WORKER", "state": "IDLE", "actor_id": "",
			"log_file": "/tmp/rayo/s-2/logs/worker-5151.log"},
		{"worker_id": "", "node_id": nodeA, "pid": 4100, "worker_type": "DRIVER", "state": "ALIVE", "actor_id": "", "log_file": ""},
	}
	var result []map[string]any
	for _, x := range all {
		keep := true
		for _, f := range r.URL.Query()["filter"] {
			k, v, _ := strings.Cut(f, "=")
			keep = keep && fmt.Sprint(x[k]) == v
		}
		if keep {
			result = append(result, x)
		}
	}
	writeJSON(w, 200, map[string]any{"total": len(all), "num_filtered": len(result), "offset": 0, "limit": 10000, "result": result})
}

// serveFakeActors answers an actor list: one actor alive, one dead as its
// owner died.
func serveFakeActors(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"total": 2, "num_filtered": 2, "offset": 0, "limit": 100, "dropped": 0,
		"result": []map[string]any{
			{"actor_id": "a1a1", "class_name": "Counter", "name": "kept", "state": "ALIVE", "node_id": nodeA, "pid": 4243,
				"num_restarts": 0, "death_cause": "", "death_message": ""},
			{"actor_id": "b2b2", "class_name": "Counter", "name": "", "state": "DEAD", "node_id": nodeA, "pid": 4244,
				"num_restarts": 1, "death_cause": "OWNER_DIED", "death_message": "its owner, the driver of job 01, died"},
		},
	})
}

// serveFakePlacementGroups answers a placement group list: one created,
// one pending with its reason.
func serveFakePlacementGroups(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"total": 2, "num_filtered": 2, "offset": 0, "limit": 100, "dropped": 0,
		"result": []map[string]any{
			{"placement_group_id": "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a", "name": "pair", "state": "CREATED", "strategy": "STRICT_SPREAD",
				"bundles": []map[string]any{{"bundle_index": 0, "resources": map[string]float64{"CPU": 1}, "node_id": nodeA},
					{"bundle_index": 1, "resources": map[string]float64{"CPU": 1}, "node_id": "ba9876543210"}}},
			{"placement_group_id": "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b", "name": "", "state": "PENDING", "strategy": "PACK",
				"bundles": []map[string]any{{"bundle_index": 0, "resources": map[string]float64{"GPU": 1}, "node_id": ""}},
				"reason":  "no node can ever hold bundle 0 {GPU=1}"},
		},
	})
}

// serveFakeTaskSummary answers a summary of the tasks by name.
func serveFakeTaskSummary(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"total": 40, "dropped": 2, "summary": map[string]any{
		"square": map[string]any{"name": "square", "type": "NORMAL_TASK", "state_counts": map[string]int{"FINISHED": 30, "RUNNING": 2}},
		"divide": map[string]any{"name": "divide", "type": "NORMAL_TASK", "state_counts": map[string]int{"FAILED": 8}},
	}})
}

// serveFakeObjectSummary answers a summary of the objects by node.
func serveFakeObjectSummary(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"total": 5, "total_size_bytes": 5 << 20, "summary": map[string]any{
		nodeA: map[string]any{"count": 5, "size_bytes": 5 << 20},
	}})
}

// serveFakeTask answers taskFailed's two attempts, and 404 for any other
// task.
func serveFakeTask(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != taskFailed {
		writeJSON(w, 404, map[string]string{"error": "task " + r.PathValue("id") + " not found"})
		return
	}
	writeJSON(w, 200, map[string]any{"result": []map[string]any{
		{"task_id": taskFailed, "attempt_number": 0, "name": "divide", "state": "FAILED", "node_id": nodeA,
			"error_type": "WORKER_DIED", "error_message": "the worker died", "state_times_ms": map[string]int{"RUNNING": 2, "FAILED": 3}},
		{"task_id": taskFailed, "attempt_number": 1, "name": "divide", "state": "FAILED", "node_id": nodeA,
			"error_type": "TASK_EXECUTION_EXCEPTION", "error_message": failedStack},
	}})
}

// serveFakeLogs answers a log of two lines. Followed, it sends the second
// line once the test closes f.logStep, then stays open.
func (f *fakeAPI) serveFakeLogs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, "line 1")
	if r.URL.Query().Get("follow") != "1" {
		fmt.Fprintln(w, "line 2")
		return
	}
	w.(http.Flusher).Flush()
	select {
	case <-f.logStep:
	case <-r.Context().Done():
		return
	}
	fmt.Fprintln(w, "line 2")
	w.(http.Flusher).Flush()
	<-r.Context().Done() // a followed log stays open
}

// serveFakeTimeline answers a timeline of two tasks, or an object rather
// than an array for job_id=bad.
func serveFakeTimeline(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("job_id") == "bad" {
		writeJSON(w, 200, map[string]string{"not": "an array"})
		return
	}
	writeJSON(w, 200, []map[string]any{
		{"name": "square", "ph": "X", "ts": 1000, "dur": 50, "pid": 1, "tid": 4243, "args": map[string]string{"task_id": taskOK, "state": "FINISHED"}},
		{"name": "divide", "ph": "X", "ts": 1100, "dur": 20, "pid": 1, "tid": 4242, "args": map[string]string{"task_id": taskFailed, "state": "FAILED"}},
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) seen() []*url.URL {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// runState runs rayo with args against api (HOST:PORT, without scheme, to
// cover that form).
func runState(t *testing.T, ctx context.Context, api string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs(append(args, "--dashboard-address", api))
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func hostPort(f *fakeAPI) string { return strings.TrimPrefix(f.URL, "http://") }

func TestListTasksTable(t *testing.T) {
	api := newFakeAPI(t)
	out, errOut, err := runState(t, context.Background(), hostPort(api), "list", "tasks")
	if err != nil {
		t.Fatalf("list tasks: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header, 3 rows and a footer, got:\n%s", out)
	}
	if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"TASK_ID", "ATTEMPT", "NAME", "STATE", "NODE", "WORKER_PID", "ERROR_TYPE"}) {
		t.Errorf("header %q", got)
	}
	if got := strings.Fields(lines[1]); !slices.Equal(got, []string{taskFailed, "1", "divide", "FAILED", nodeA, "4242", "TASK_EXECUTION_EXCEPTION"}) {
		t.Errorf("first row %q", got)
	}
	if got := strings.Fields(lines[3]); !slices.Equal(got, []string{"99", "0", "pending", "PENDING_NODE_ASSIGNMENT", "0"}) {
		t.Errorf("pending row %q", got)
	}
	if lines[4] != "showing 3 of 40 (1200 held; 12 dropped)" {
		t.Errorf("footer %q", lines[4])
	}
	if !strings.Contains(errOut, "warning: 12 finished tasks were dropped") {
		t.Errorf("warning not on stderr: %q", errOut)
	}
	if strings.Contains(out, "warning") {
		t.Errorf("warning on stdout: %q", out)
	}
}

func TestListTasksJSON(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), api.URL, "list", "tasks", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Total  int              `json:"total"`
		Result []map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("--json printed invalid JSON: %v\n%s", err, out)
	}
	if page.Total != 1200 || len(page.Result) != 3 || page.Result[0]["error_message"] != failedStack {
		t.Errorf("--json lost the server's data: %+v", page)
	}
	if !strings.Contains(out, "\n  \"") {
		t.Errorf("--json is not indented:\n%s", out)
	}
}

func TestListFiltersAndLimitReachServer(t *testing.T) {
	api := newFakeAPI(t)
	_, errOut, err := runState(t, context.Background(), hostPort(api), "list", "tasks",
		"--filter", "state=FAILED", "--filter", "name!=square", "--filter", "error_message=a=b", "--limit", "5", "--offset", "10")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	reqs := api.seen()
	if len(reqs) != 1 {
		t.Fatalf("want one request, got %v", reqs)
	}
	q := reqs[0].Query()
	if reqs[0].Path != "/api/v0/tasks" || !slices.Equal(q["filter"], []string{"state=FAILED", "name!=square", "error_message=a=b"}) ||
		q.Get("limit") != "5" || q.Get("offset") != "10" {
		t.Errorf("request %s", reqs[0])
	}
}

func TestListNodes(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), hostPort(api), "list", "nodes")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NODE_ID", nodeA, "127.0.0.1:6380", "ALIVE", "12.5%", "3.0GiB/16.0GiB", "1.0MiB/2.0GiB", "showing 1 of 1 (1 held)"} {
		if !strings.Contains(out, want) {
			t.Errorf("list nodes lacks %q:\n%s", want, out)
		}
	}
}

func TestListActorsShowsDeathCause(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), hostPort(api), "list", "actors")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.HasSuffix(strings.TrimSpace(lines[0]), "DEATH_CAUSE") ||
		!strings.HasSuffix(strings.TrimSpace(lines[1]), " -") || !strings.HasSuffix(strings.TrimSpace(lines[2]), " OWNER_DIED") {
		t.Errorf("list actors: want a DEATH_CAUSE column, - for the living:\n%s", out)
	}
}

func TestListPlacementGroups(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), hostPort(api), "list", "placement_groups")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PLACEMENT_GROUP_ID", "pair", "CREATED", "STRICT_SPREAD", "2: " + nodeA + ",ba9876543210", "PENDING", "1: -"} {
		if !strings.Contains(out, want) {
			t.Errorf("list placement_groups lacks %q:\n%s", want, out)
		}
	}
}

func TestSummaryTasksAndObjects(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), hostPort(api), "summary", "tasks")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"NAME", "TYPE", "RUNNING", "FINISHED", "FAILED"},
		{"divide", "NORMAL_TASK", "0", "0", "8"},
		{"square", "NORMAL_TASK", "2", "30", "0"},
		{"40", "tasks", "(2", "dropped)"},
	}
	if len(lines) != len(want) {
		t.Fatalf("summary tasks:\n%s", out)
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); !slices.Equal(got, w) {
			t.Errorf("line %d: %q, want %q", i, got, w)
		}
	}
	out, _, err = runState(t, context.Background(), hostPort(api), "summary", "objects")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, nodeA) || !strings.Contains(out, "5.0MiB") || !strings.Contains(out, "5 objects") {
		t.Errorf("summary objects:\n%s", out)
	}
}

func TestGetFailedTaskPrintsStack(t *testing.T) {
	api := newFakeAPI(t)
	out, errOut, err := runState(t, context.Background(), hostPort(api), "get", "task", taskFailed)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, want := range []string{
		"task_id: " + taskFailed, "attempt_number: 0", "attempt_number: 1", "error_type: WORKER_DIED",
		"error_message: the worker died", `state_times_ms: {"FAILED":3,"RUNNING":2}`, "error_message:\n    panic: divide by zero",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("get task lacks %q:\n%s", want, out)
		}
	}
	// The stack is there in full, every line.
	for _, line := range strings.Split(failedStack, "\n") {
		if line != "" && !strings.Contains(out, "    "+line+"\n") {
			t.Errorf("stack line %q missing:\n%s", line, out)
		}
	}
	// Attempts are separated, in the server's order (the fake's keys are
	// sorted).
	if i, j := strings.Index(out, "attempt_number: 0"), strings.Index(out, "attempt_number: 1"); i > j || !strings.Contains(out, "\n\nattempt_number: 1\n") {
		t.Errorf("attempts not in order or not separated:\n%s", out)
	}
	if got := api.seen(); got[0].Path != "/api/v0/tasks/"+taskFailed {
		t.Errorf("request %s", got[0])
	}
}

func TestLogsTail(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), hostPort(api), "logs", "--node", nodeA, "--pid", "4242", "--tail", "20")
	if err != nil {
		t.Fatal(err)
	}
	if out != "line 1\nline 2\n" {
		t.Errorf("logs printed %q", out)
	}
	q := api.seen()[0].Query()
	if q.Get("node_id") != nodeA || q.Get("pid") != "4242" || q.Get("lines") != "20" || q.Has("follow") {
		t.Errorf("query %v", q)
	}
}

func TestLogsListsTheLogsThereAre(t *testing.T) {
	api := newFakeAPI(t)
	out, _, err := runState(t, context.Background(), hostPort(api), "logs", "--node", nodeA)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !slices.Equal(strings.Fields(lines[0]), []string{"NODE", "PID", "TYPE", "STATE", "ACTOR_ID", "LOG_FILE"}) {
		t.Fatalf("want a header, the node's 2 workers and a footer, got:\n%s", out)
	}
	if got := strings.Fields(lines[2]); !slices.Equal(got, []string{nodeA, "4243", "WORKER", "ACTOR", taskOK, "/tmp/rayo/s-1/logs/worker-4243.log"}) {
		t.Errorf("second row %q", got)
	}
	if !strings.HasPrefix(lines[3], "2 logs; print one with: rayo logs --node ID --pid P") {
		t.Errorf("footer %q", lines[3])
	}
	// Without --node: every node's; as JSON, the API's own answer.
	out, _, err = runState(t, context.Background(), hostPort(api), "logs", "--json")
	var page struct{ Result []map[string]any }
	if err != nil || json.Unmarshal([]byte(out), &page) != nil || len(page.Result) != 3 {
		t.Fatalf("logs --json: %v\n%s", err, out)
	}
	// One log's lines as JSON.
	out, _, err = runState(t, context.Background(), hostPort(api), "logs", "--worker", "77aa", "--json")
	var log struct{ Lines []string }
	if err != nil || json.Unmarshal([]byte(out), &log) != nil || !slices.Equal(log.Lines, []string{"line 1", "line 2"}) {
		t.Fatalf("logs --worker --json: %v\n%s", err, out)
	}
}

// chanWriter hands every write to a channel, so a test can see output as
// it arrives.
type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

func TestLogsFollowStreams(t *testing.T) {
	api := newFakeAPI(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chanWriter, 16)
	var errOut bytes.Buffer
	cmd := newRootCmd(out, &errOut)
	cmd.SetArgs([]string{"logs", "--task", taskOK, "--follow", "--dashboard-address", api.URL})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	var got strings.Builder
	waitFor := func(want string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for !strings.Contains(got.String(), want) {
			select {
			case s := <-out:
				got.WriteString(s)
			case err := <-done:
				t.Fatalf("logs ended before %q: %v; printed %q", want, err, got.String())
			case <-timeout:
				t.Fatalf("no %q after 20s; printed %q", want, got.String())
			}
		}
	}
	waitFor("line 1\n")
	if strings.Contains(got.String(), "line 2") {
		t.Fatalf("line 2 printed before the server wrote it")
	}
	close(api.logStep)
	waitFor("line 2\n")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow ended with %v after cancel", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs --follow did not end on cancel")
	}
	q := api.seen()[0].Query()
	if q.Get("task_id") != taskOK || q.Get("follow") != "1" {
		t.Errorf("query %v", q)
	}
}

func TestTimelineWritesFile(t *testing.T) {
	api := newFakeAPI(t)
	file := filepath.Join(t.TempDir(), "tl.json")
	out, _, err := runState(t, context.Background(), hostPort(api), "timeline", "--job", "01000000", "-o", file)
	if err != nil {
		t.Fatal(err)
	}
	if out != "wrote 2 events to "+file+"; open it in https://ui.perfetto.dev or chrome://tracing\n" {
		t.Errorf("timeline printed %q", out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Ph  string `json:"ph"`
		Ts  int64  `json:"ts"`
		Dur int64  `json:"dur"`
	}
	if err := json.Unmarshal(b, &events); err != nil || len(events) != 2 || events[0].Ph != "X" || events[0].Dur != 50 {
		t.Errorf("file holds %v (%v)", events, err)
	}
	if q := api.seen()[0].Query(); q.Get("job_id") != "01000000" {
		t.Errorf("query %v", q)
	}
}

func TestTimelineDefaultFileName(t *testing.T) {
	api := newFakeAPI(t)
	dir := t.TempDir()
	t.Chdir(dir)
	out, _, err := runState(t, context.Background(), hostPort(api), "timeline")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "timeline-*.json"))
	if len(files) != 1 || !strings.Contains(out, filepath.Base(files[0])) {
		t.Errorf("files %v, printed %q", files, out)
	}
}

func TestStateBadInputs(t *testing.T) {
	api := newFakeAPI(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := closed.Addr().String()
	closed.Close()
	cases := []struct {
		name      string
		api       string
		args      []string
		want      string
		noRequest bool // rejected before asking the server
	}{
		{"unknown list resource", hostPort(api), []string{"list", "bogus"}, "rayo: unknown resource \"bogus\": want one of nodes, workers, jobs, tasks, actors, objects, placement_groups", true},
		{"unknown summary resource", hostPort(api), []string{"summary", "nodes"}, "want one of tasks, actors, objects", true},
		{"unknown get resource", hostPort(api), []string{"get", "tasks", "x"}, "want one of task, actor, node, job", true},
		{"list without a resource", hostPort(api), []string{"list"}, "give RESOURCE, RESOURCE one of nodes, workers", true},
		{"get without an ID", hostPort(api), []string{"get", "task"}, "give RESOURCE ID (got 1 arguments)", true},
		{"filter without =", hostPort(api), []string{"list", "tasks", "--filter", "state"}, "bad --filter \"state\"", true},
		{"filter with empty key", hostPort(api), []string{"list", "tasks", "--filter", "=FAILED"}, "the key is empty", true},
		{"filter != with empty key", hostPort(api), []string{"list", "tasks", "--filter", "!=FAILED"}, "the key is empty", true},
		{"negative limit", hostPort(api), []string{"list", "tasks", "--limit", "-1"}, "bad --limit", true},
		{"follow without a log", hostPort(api), []string{"logs", "--follow"}, "--follow and --tail need one log", true},
		{"logs with two targets", hostPort(api), []string{"logs", "--task", "a", "--actor", "b"}, "give exactly one of", true},
		{"logs pid without node", hostPort(api), []string{"logs", "--pid", "4242"}, "--node ID and --pid P go together", true},
		{"logs follow as JSON", hostPort(api), []string{"logs", "--task", "a", "--follow", "--json"}, "--json and --follow do not go together", false},
		{"logs of an unknown node", hostPort(api), []string{"logs", "--node", "feedfacecafe"}, "rayo: node feedfacecafe not found", false},
		{"bad address", "ftp://x:1", []string{"list", "tasks"}, "bad dashboard address", true},
		{"unknown ID", hostPort(api), []string{"get", "task", "ffff"}, "rayo: task ffff not found", false},
		{"server error without JSON", hostPort(api), []string{"list", "jobs"}, "404 Not Found", false},
		{"timeline not an array", hostPort(api), []string{"timeline", "--job", "bad", "-o", filepath.Join(t.TempDir(), "x.json")}, "not a JSON array", false},
		{"unreachable API", unreachable, []string{"list", "tasks"}, "rayo: cannot reach the rayo API at http://" + unreachable + " (is a cluster running?", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(api.seen())
			out, errOut, err := runState(t, context.Background(), tc.api, tc.args...)
			if err == nil {
				t.Fatalf("no error; printed %q", out)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q, want %q", errOut, tc.want)
			}
			if sent := len(api.seen()) - before; tc.noRequest && sent != 0 {
				t.Errorf("%d requests sent for a bad input", sent)
			}
		})
	}
}

func TestStateDashboardAddress(t *testing.T) {
	api := newFakeAPI(t)
	state := t.TempDir()
	t.Setenv("RAYO_STATE_DIR", state)
	t.Setenv("RAYO_DASHBOARD_ADDRESS", "")
	if got, err := dashboardURL(""); err != nil || got != defaultDashboard {
		t.Errorf("no address: %q %v", got, err)
	}
	if err := node.WriteCluster(state, node.ClusterInfo{Address: "127.0.0.1:6380", Dashboard: api.URL + "/"}); err != nil {
		t.Fatal(err)
	}
	if got, err := dashboardURL(""); err != nil || got != api.URL {
		t.Errorf("cluster record: %q %v", got, err)
	}
	t.Setenv("RAYO_DASHBOARD_ADDRESS", "127.0.0.1:9")
	if got, err := dashboardURL(""); err != nil || got != "http://127.0.0.1:9" {
		t.Errorf("environment: %q %v", got, err)
	}
	if got, err := dashboardURL("https://h:1"); err != nil || got != "https://h:1" {
		t.Errorf("flag: %q %v", got, err)
	}
	// The command uses the cluster record when nothing else is given.
	t.Setenv("RAYO_DASHBOARD_ADDRESS", "")
	var out bytes.Buffer
	cmd := newRootCmd(&out, &out)
	cmd.SetArgs([]string{"list", "nodes"})
	if err := cmd.Execute(); err != nil || !strings.Contains(out.String(), nodeA) {
		t.Errorf("list nodes via the cluster record: %v\n%s", err, out.String())
	}
}

// rayo job takes the API server as --address too, as ray job does.
func TestJobAddressAlias(t *testing.T) {
	api := newFakeAPI(t)
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs([]string{"job", "status", "nosuch", "--address", api.URL})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || len(api.seen()) != 1 || api.seen()[0].Path != "/api/jobs/nosuch" {
		t.Fatalf("rayo job status --address: %v (requests %v)\n%s", err, api.seen(), errOut.String())
	}
}

// TestJobTokenStaysLocal: rayo job presents this machine's cluster token
// to that cluster's API server only, not to another --address (it used
// to send it to any).
func TestJobTokenStaysLocal(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	recordAuth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		writeJSON(w, 404, map[string]string{"error": "no such job"})
	})
	srv, other := httptest.NewServer(recordAuth), httptest.NewServer(recordAuth)
	defer srv.Close()
	defer other.Close()
	state := t.TempDir()
	t.Setenv("RAYO_STATE_DIR", state)
	t.Setenv("RAYO_TOKEN", "")
	if err := node.WriteCluster(state, node.ClusterInfo{Address: "127.0.0.1:6380", Token: "local-secret", Dashboard: srv.URL}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr string
		want string
	}{
		{other.URL, ""},                  // elsewhere: no token
		{srv.URL, "Bearer local-secret"}, // the local cluster's API server
		{strings.TrimPrefix(srv.URL, "http://"), "Bearer local-secret"},
	} {
		mu.Lock()
		auth = nil
		mu.Unlock()
		var out, errOut bytes.Buffer
		cmd := newRootCmd(&out, &errOut)
		cmd.SetArgs([]string{"job", "status", "nosuch", "--address", tc.addr})
		_ = cmd.ExecuteContext(context.Background())
		mu.Lock()
		got := auth
		mu.Unlock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("rayo job --address %s sent Authorization %q, want %q", tc.addr, got, tc.want)
		}
	}
}
