package dashboard

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// fakeSource is a cluster of two nodes held in memory.
type fakeSource struct {
	err error // every call fails with it, when set

	nodes  []*pb.NodeInfo
	stats  map[string]*pb.NodeStats      // by node address
	store  map[string][]*pb.ObjectRecord // by node address
	owned  map[string][]*pb.ObjectRecord // by owner endpoint
	jobs   []*pb.JobInfo
	tasks  *pb.StateList
	actors *pb.StateList
	groups []*pb.PlacementGroup
	logs   map[int32][]byte // by pid

	mu      sync.Mutex
	logReqs []*pb.LogRequest
	logHook func(*pb.LogRequest) // called by each ReadLog, when set
}

var (
	nodeA = bytes.Repeat([]byte{0xaa}, 16)
	nodeB = bytes.Repeat([]byte{0xbb}, 16)
	taskX = bytes.Repeat([]byte{0x01}, 16)
	taskY = bytes.Repeat([]byte{0x02}, 16)
	taskZ = bytes.Repeat([]byte{0x03}, 16)
	actor = bytes.Repeat([]byte{0x0c}, 16)
	group = bytes.Repeat([]byte{0x9f}, 16)
	objP  = bytes.Repeat([]byte{0x0d}, 20)
	objW  = bytes.Repeat([]byte{0x0e}, 20)
)

const msNs = int64(time.Millisecond)

func times(kv ...any) map[string]int64 {
	m := map[string]int64{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = int64(kv[i+1].(int)) * msNs
	}
	return m
}

func newFake() *fakeSource {
	task := func(id []byte, attempt int32, name, st, node string, pid int32, t map[string]int64) *pb.TaskRecord {
		return &pb.TaskRecord{Task: &pb.TaskEvent{TaskId: id, Attempt: attempt, Name: name, State: st, Type: tasktable.TypeNormal,
			JobId: "01", NodeId: node, WorkerPid: pid}, StateTimesUnixNs: t}
	}
	failed := task(taskY, 1, "divide", tasktable.TaskFailed, "aaaaaaaaaaaa", 42, times(tasktable.TaskRunning, 2000, tasktable.TaskFailed, 2010))
	failed.Task.ErrorType, failed.Task.Error = "TASK_EXECUTION_EXCEPTION", "panic: divide by zero\ngoroutine 7 [running]"
	return &fakeSource{
		nodes: []*pb.NodeInfo{
			{NodeId: nodeA, Address: "10.0.0.1:1", State: "ALIVE", Head: true, Resources: []*pb.Resource{{Name: "CPU", Quantity: 2}}},
			{NodeId: nodeB, Address: "10.0.0.2:1", State: "ALIVE", Resources: []*pb.Resource{{Name: "CPU", Quantity: 4}}},
		},
		stats: map[string]*pb.NodeStats{
			"10.0.0.1:1": {Workers: []*pb.WorkerRecord{{WorkerId: []byte{1}, Pid: 42, NodeId: "aaaaaaaaaaaa", Type: "WORKER", State: "LEASED", Addr: "w42"}}},
			"10.0.0.2:1": {Workers: []*pb.WorkerRecord{{WorkerId: []byte{2}, Pid: 77, NodeId: "bbbbbbbbbbbb", Type: "WORKER", State: "IDLE", Addr: "w77"}}},
		},
		store: map[string][]*pb.ObjectRecord{
			"10.0.0.1:1": {{ObjectId: objP, Size: 1000, Kind: "PRIMARY"}},
			"10.0.0.2:1": {{ObjectId: objP, Size: 1000, Kind: "COPY"}, {ObjectId: objW, Size: 500, Kind: "PRIMARY"}},
		},
		owned: map[string][]*pb.ObjectRecord{
			"driver": {{ObjectId: objP, Size: 1000, OwnerAddr: "driver", RefCount: 2, JobId: "01", Kind: "IN_STORE"}},
			"w77":    {{ObjectId: objW, Size: 500, OwnerAddr: "w77", RefCount: 1, JobId: "01", Kind: "IN_STORE"}},
		},
		jobs: []*pb.JobInfo{{JobId: "01", State: "RUNNING", DriverAddr: "driver", NodeId: nodeA, StartUnixMs: 5}},
		tasks: &pb.StateList{Tasks: []*pb.TaskRecord{
			task(taskX, 0, "square", tasktable.TaskFinished, "aaaaaaaaaaaa", 42, times(tasktable.TaskRunning, 1000, tasktable.TaskFinished, 1005)),
			task(taskY, 0, "divide", tasktable.TaskFailed, "bbbbbbbbbbbb", 77, times(tasktable.TaskRunning, 1500, tasktable.TaskFailed, 1510)),
			failed,
			task(taskZ, 0, "square", tasktable.TaskRunning, "bbbbbbbbbbbb", 77, times(tasktable.TaskRunning, 3000)),
		}},
		actors: &pb.StateList{Actors: []*pb.ActorRecord{{Actor: &pb.ActorEvent{ActorId: actor, ClassName: "Counter", State: "ALIVE", NodeId: "bbbbbbbbbbbb", Pid: 77}}}},
		groups: []*pb.PlacementGroup{{PlacementGroupId: group, Name: "pair", State: "CREATED", Strategy: "STRICT_SPREAD",
			Bundles: []*pb.Bundle{{Resources: []*pb.Resource{{Name: "CPU", Quantity: 1}}, NodeId: nodeA}, {Resources: []*pb.Resource{{Name: "CPU", Quantity: 1}}, NodeId: nodeB}}}},
		logs: map[int32][]byte{42: []byte("one\ntwo\nthree\n")},
	}
}

func (f *fakeSource) Nodes(context.Context) ([]*pb.NodeInfo, error) { return f.nodes, f.err }
func (f *fakeSource) Jobs(context.Context) ([]*pb.JobInfo, error)   { return f.jobs, f.err }

func (f *fakeSource) Tasks(_ context.Context, q *pb.StateQuery) (*pb.StateList, error) {
	if f.err != nil {
		return nil, f.err
	}
	if len(q.Id) == 0 {
		return f.tasks, nil
	}
	out := &pb.StateList{}
	for _, t := range f.tasks.Tasks {
		if bytes.Equal(t.Task.TaskId, q.Id) {
			out.Tasks = append(out.Tasks, t)
		}
	}
	return out, nil
}

func (f *fakeSource) Actors(_ context.Context, q *pb.StateQuery) (*pb.StateList, error) {
	if f.err != nil {
		return nil, f.err
	}
	if len(q.Id) == 0 || bytes.Equal(q.Id, actor) {
		return f.actors, nil
	}
	return &pb.StateList{}, nil
}

func (f *fakeSource) NodeStats(_ context.Context, n *pb.NodeInfo) (*pb.NodeStats, error) {
	return f.stats[n.Address], f.err
}

func (f *fakeSource) NodeObjects(_ context.Context, n *pb.NodeInfo) ([]*pb.ObjectRecord, error) {
	return f.store[n.Address], f.err
}

func (f *fakeSource) OwnedObjects(_ context.Context, owner string) ([]*pb.ObjectRecord, error) {
	if l, ok := f.owned[owner]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no owner at %s", owner)
}

func (f *fakeSource) ReadLog(_ context.Context, _ *pb.NodeInfo, req *pb.LogRequest) ([]byte, error) {
	f.mu.Lock()
	f.logReqs = append(f.logReqs, req)
	hook := f.logHook
	f.mu.Unlock()
	if hook != nil {
		hook(req)
	}
	b, ok := f.logs[req.Pid]
	if !ok {
		return nil, fmt.Errorf("no worker %d", req.Pid)
	}
	if req.Offset >= int64(len(b)) {
		return nil, nil
	}
	b = b[req.Offset:]
	if req.Max > 0 && int64(len(b)) > req.Max {
		b = b[:req.Max]
	}
	return b, nil
}

func (f *fakeSource) PlacementGroups(context.Context) ([]*pb.PlacementGroup, error) {
	return f.groups, f.err
}

// get serves path and decodes its JSON body into v; it returns the code.
func get(t *testing.T, s *Server, path string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, localRequest(http.MethodGet, path, nil))
	if v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
		}
	}
	return rec.Code
}

type list struct {
	Total       int              `json:"total"`
	NumFiltered int              `json:"num_filtered"`
	Offset      int              `json:"offset"`
	Limit       int              `json:"limit"`
	Dropped     int64            `json:"dropped"`
	Warnings    []string         `json:"warnings"`
	Result      []map[string]any `json:"result"`
}

type apiErr struct{ Error string }

func TestEveryListHasItsFields(t *testing.T) {
	s := New(Config{Source: newFake()})
	for resource, want := range map[string]int{"nodes": 2, "workers": 2, "jobs": 1, "tasks": 4, "actors": 1, "objects": 2, "placement_groups": 1} {
		var l list
		if code := get(t, s, "/api/v0/"+resource, &l); code != http.StatusOK {
			t.Fatalf("%s: %d", resource, code)
		}
		if len(l.Result) != want || l.Total != want {
			t.Errorf("%s: %d records (total %d), want %d", resource, len(l.Result), l.Total, want)
		}
		for _, r := range l.Result {
			for _, f := range fields[resource] {
				if _, ok := r[f]; !ok {
					t.Errorf("%s: a record lacks %q: %v", resource, f, r)
				}
			}
		}
	}
	var objs list
	get(t, s, "/api/v0/objects", &objs)
	for _, o := range objs.Result {
		switch o["object_id"] {
		case hex.EncodeToString(objP):
			if fmt.Sprint(o["locations"]) != "[aaaaaaaaaaaa bbbbbbbbbbbb]" || o["reference_count"] != 2.0 || o["kind"] != "PRIMARY" || o["owner_address"] != "driver" {
				t.Errorf("the driver's object: %v", o)
			}
		case hex.EncodeToString(objW):
			if o["reference_count"] != 1.0 || o["owner_address"] != "w77" {
				t.Errorf("the worker's object (its owner is a live worker, asked too): %v", o)
			}
		}
	}
	var pgs list
	get(t, s, "/api/v0/placement_groups", &pgs)
	if b := fmt.Sprint(pgs.Result[0]["bundles"]); !strings.Contains(b, "node_id:aaaaaaaaaaaa") || !strings.Contains(b, "node_id:bbbbbbbbbbbb") {
		t.Errorf("placement group bundles: %s", b)
	}
}

func TestFiltersAndPages(t *testing.T) {
	s := New(Config{Source: newFake()})
	for query, want := range map[string]int{
		"filter=state=FAILED":                     2,
		"filter=state!=FAILED":                    2,
		"filter=name=square&filter=state=RUNNING": 1,
		"filter=attempt_number=1":                 1,
		"filter=name=nothing":                     0,
	} {
		var l list
		if code := get(t, s, "/api/v0/tasks?"+query, &l); code != http.StatusOK || l.NumFiltered != want || len(l.Result) != want || l.Total != 4 {
			t.Errorf("%s: %d, %d of %d (%d shown), want %d of 4", query, code, l.NumFiltered, l.Total, len(l.Result), want)
		}
	}
	var page list
	get(t, s, "/api/v0/tasks?limit=2&offset=1", &page)
	if len(page.Result) != 2 || page.Limit != 2 || page.Offset != 1 || page.NumFiltered != 4 {
		t.Errorf("limit 2 offset 1: %+v", page)
	}
	get(t, s, "/api/v0/tasks?offset=10", &page)
	if len(page.Result) != 0 || page.Result == nil {
		t.Errorf("past the end: %+v (want an empty list, not null)", page.Result)
	}
	for _, query := range []string{"filter=state", "filter=color=red", "limit=0", "limit=100000", "limit=x", "offset=-1"} {
		var e apiErr
		if code := get(t, s, "/api/v0/tasks?"+query, &e); code != http.StatusBadRequest || e.Error == "" {
			t.Errorf("%s: %d %q, want 400 with a message", query, code, e.Error)
		}
	}
	var e apiErr
	if code := get(t, s, "/api/v0/bogus", &e); code != http.StatusBadRequest || !strings.Contains(e.Error, "unknown resource") {
		t.Errorf("unknown resource: %d %q", code, e.Error)
	}
	if code := get(t, s, "/api/v1/tasks", &e); code != http.StatusNotFound {
		t.Errorf("unknown endpoint: %d", code)
	}
}

func TestOneRecord(t *testing.T) {
	s := New(Config{Source: newFake()})
	var one struct{ Result []map[string]any }
	if code := get(t, s, "/api/v0/tasks/"+hex.EncodeToString(taskY), &one); code != http.StatusOK || len(one.Result) != 2 {
		t.Fatalf("task with two attempts: %d %v", code, one.Result)
	}
	if one.Result[0]["attempt_number"] != 0.0 || !strings.Contains(fmt.Sprint(one.Result[1]["error_message"]), "goroutine 7") {
		t.Errorf("attempts in order, the last with its stack: %v", one.Result)
	}
	for path, want := range map[string]int{
		"/api/v0/tasks/" + strings.Repeat("77", 16):             http.StatusNotFound,
		"/api/v0/tasks/not-hex":                                 http.StatusBadRequest,
		"/api/v0/actors/" + hex.EncodeToString(actor):           http.StatusOK,
		"/api/v0/actors/" + strings.Repeat("77", 16):            http.StatusNotFound,
		"/api/v0/nodes/bbbbbbbbbbbb":                            http.StatusOK,
		"/api/v0/placement_groups/" + hex.EncodeToString(group): http.StatusOK,
		"/api/v0/placement_groups/00":                           http.StatusNotFound,
	} {
		if code := get(t, s, path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

func TestSummaries(t *testing.T) {
	s := New(Config{Source: newFake()})
	var tasks struct {
		Total   int
		Summary map[string]struct {
			StateCounts map[string]int `json:"state_counts"`
		}
	}
	get(t, s, "/api/v0/tasks/summarize", &tasks)
	if tasks.Total != 4 || tasks.Summary["square"].StateCounts["FINISHED"] != 1 || tasks.Summary["square"].StateCounts["RUNNING"] != 1 || tasks.Summary["divide"].StateCounts["FAILED"] != 2 {
		t.Errorf("task summary: %+v", tasks)
	}
	var objs struct {
		Total          int   `json:"total"`
		TotalSizeBytes int64 `json:"total_size_bytes"`
		Summary        map[string]map[string]int64
	}
	get(t, s, "/api/v0/objects/summarize", &objs)
	if objs.Total != 2 || objs.TotalSizeBytes != 1500 || objs.Summary["bbbbbbbbbbbb"]["count"] != 2 || objs.Summary["aaaaaaaaaaaa"]["size_bytes"] != 1000 {
		t.Errorf("object summary: %+v", objs)
	}
	var e apiErr
	if code := get(t, s, "/api/v0/nodes/summarize", &e); code != http.StatusBadRequest {
		t.Errorf("summary of nodes: %d", code)
	}
}

func TestUnreachableCluster(t *testing.T) {
	f := newFake()
	f.err = fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", ErrUnreachable)
	s := New(Config{Source: f})
	for _, path := range []string{"/api/v0/tasks", "/api/v0/nodes", "/api/v0/tasks/summarize", "/api/v0/placement_groups", "/api/v0/timeline"} {
		var e apiErr
		if code := get(t, s, path, &e); code != http.StatusServiceUnavailable || !strings.Contains(e.Error, "connection refused") {
			t.Errorf("%s: %d %q, want 503 with the cause", path, code, e.Error)
		}
	}
	f.err = fmt.Errorf("the control store said no")
	if code := get(t, s, "/api/v0/tasks", nil); code != http.StatusBadGateway {
		t.Errorf("a failing source: %d, want 502", code)
	}
}

func TestDroppedTasksAreSaid(t *testing.T) {
	f := newFake()
	f.tasks.DroppedTasks = 5
	s := New(Config{Source: f})
	var l list
	get(t, s, "/api/v0/tasks", &l)
	if l.Dropped != 5 || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "5 task attempts were dropped") {
		t.Errorf("dropped %d, warnings %q", l.Dropped, l.Warnings)
	}
}

func TestTimeline(t *testing.T) {
	s := New(Config{Source: newFake()})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, localRequest(http.MethodGet, "/api/v0/timeline", nil))
	var events []traceEvent
	if err := json.Unmarshal(rec.Body.Bytes(), &events); err != nil {
		t.Fatalf("not a JSON array of trace events: %v\n%s", err, rec.Body)
	}
	complete := map[string]int64{}
	processes, threads := map[int]string{}, map[string]string{}
	for _, e := range events {
		switch {
		case e.Ph == "X":
			complete[fmt.Sprint(e.Args["task_id"], "/", e.Args["attempt"])] = e.Dur
			if e.Pid <= 0 || e.Tid <= 0 {
				t.Errorf("event %+v: want an integer pid (the node) and tid (the worker)", e)
			}
		case e.Ph == "M" && e.Name == "process_name":
			processes[e.Pid] = fmt.Sprint(e.Args["name"])
		case e.Ph == "M" && e.Name == "thread_name":
			threads[fmt.Sprint(e.Pid, "/", e.Tid)] = fmt.Sprint(e.Args["name"])
		}
	}
	// Every process and thread of a complete event is named.
	for _, e := range events {
		if e.Ph == "X" && (!strings.HasPrefix(processes[e.Pid], "node ") || threads[fmt.Sprint(e.Pid, "/", e.Tid)] != fmt.Sprint("worker ", e.Tid)) {
			t.Errorf("event %+v: its node is named %q, its worker %q", e, processes[e.Pid], threads[fmt.Sprint(e.Pid, "/", e.Tid)])
		}
	}
	// Every attempt that ran has a complete event; the running one lasts
	// until now.
	if len(complete) != 4 || complete[hex.EncodeToString(taskX)+"/0"] != 5000 {
		t.Errorf("complete events: %v", complete)
	}
}

func TestLogs(t *testing.T) {
	f := newFake()
	s := New(Config{Source: f})
	read := func(query string) (int, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, localRequest(http.MethodGet, "/api/v0/logs?"+query, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, body := read("pid=42&node_id=aaaaaaaaaaaa"); code != http.StatusOK || body != "one\ntwo\nthree\n" {
		t.Errorf("by pid: %d %q", code, body)
	}
	if code, body := read("pid=42&node_id=aaaaaaaaaaaa&lines=1"); code != http.StatusOK || body != "three\n" {
		t.Errorf("the last line: %d %q", code, body)
	}
	// A task's log is its worker's, within the time it ran.
	if code, _ := read("task_id=" + hex.EncodeToString(taskX)); code != http.StatusOK {
		t.Fatalf("by task: %d", code)
	}
	f.mu.Lock()
	last := f.logReqs[len(f.logReqs)-1]
	f.mu.Unlock()
	if last.Pid != 42 || last.StartUnixNs != 1000*msNs || last.EndUnixNs != 1005*msNs || !bytes.Equal(last.TaskId, taskX) || last.Attempt != 0 {
		t.Errorf("task log read: pid %d, task %x attempt %d, window [%d, %d]", last.Pid, last.TaskId, last.Attempt, last.StartUnixNs, last.EndUnixNs)
	}
	for query, want := range map[string]int{
		"pid=x&node_id=aaaaaaaaaaaa":           http.StatusBadRequest,
		"pid=4294967338&node_id=aaaaaaaaaaaa":  http.StatusBadRequest, // 2^32+42 is not pid 42
		"lines=-1&pid=42&node_id=aaaaaaaaaaaa": http.StatusBadRequest,
		"":                                     http.StatusBadRequest,
		"task_id=zz":                           http.StatusBadRequest,
		"pid=42&node_id=cccccccccccc":          http.StatusNotFound,
		"pid=9&node_id=aaaaaaaaaaaa":           http.StatusNotFound,
		"task_id=" + strings.Repeat("55", 16):  http.StatusNotFound,
		"actor_id=" + strings.Repeat("55", 16): http.StatusNotFound,
		"worker_id=ffff":                       http.StatusNotFound,
	} {
		if code, _ := read(query); code != want {
			t.Errorf("logs?%s: %d, want %d", query, code, want)
		}
	}
}

// TestLogsStream: a log is passed on piece by piece as it is read, not
// gathered whole in the server's memory first: the client has its first
// piece before the server asks for the second.
func TestLogsStream(t *testing.T) {
	f := newFake()
	f.logs[77] = bytes.Repeat([]byte("0123456789abcde\n"), 3*maxLogRead/16)
	released := make(chan struct{})
	var waited atomic.Bool
	f.logHook = func(req *pb.LogRequest) {
		if req.Pid == 77 && req.Offset >= maxLogRead {
			select {
			case <-released:
			case <-time.After(10 * time.Second):
				waited.Store(true) // the client never got the first piece
			}
		}
	}
	srv := httptest.NewServer(New(Config{Source: f}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v0/logs?pid=77&node_id=aaaaaaaaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, maxLogRead)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	close(released)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if waited.Load() {
		t.Fatal("the server read the second piece of the log before sending the first")
	}
	if got := append(first, rest...); !bytes.Equal(got, f.logs[77]) {
		t.Fatalf("log of %d bytes came back as %d", len(f.logs[77]), len(got))
	}
}
