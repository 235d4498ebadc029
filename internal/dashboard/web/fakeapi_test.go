package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// record is one record of the state API, as its JSON object.
type record = map[string]any

// fakeAPI is a small in-test implementation of the documented state API
// (docs/state-api.md) over records that a test changes between steps.
type fakeAPI struct {
	done   chan struct{} // closed by close: ends the follow streams
	follow chan string   // text that a follow stream writes next

	mu      sync.Mutex
	lists   map[string][]record // resource → records; protected by mu
	logs    map[string]string   // "node/pid" → the worker's log; protected by mu
	failing map[string]int      // resource → HTTP status to answer with; protected by mu
	queries []string            // raw queries of /tasks, in order; protected by mu
}

func newFakeAPI() *fakeAPI {
	now := time.Now().UnixMilli()
	return &fakeAPI{
		done:    make(chan struct{}),
		follow:  make(chan string),
		failing: map[string]int{},
		lists: map[string][]record{
			"nodes": {
				{"node_id": "a1b2c3d4e5f6", "address": "10.0.0.1:6380", "state": "ALIVE", "is_head_node": true,
					"resources_total": record{"CPU": 4, "memory": 8e9}, "resources_available": record{"CPU": 3, "memory": 8e9},
					"cpu_percent": 12.5, "mem_used_bytes": 3 << 30, "mem_total_bytes": 16 << 30,
					"object_store_used_bytes": 100 << 20, "object_store_capacity_bytes": 2 << 30, "num_workers": 2,
					"session_dir": "/tmp/rayo/session", "death_reason": "", "metrics_address": "10.0.0.1:9000"},
				{"node_id": "0f0e0d0c0b0a", "address": "10.0.0.2:6380", "state": "ALIVE", "is_head_node": false,
					"resources_total": record{"CPU": 4}, "resources_available": record{"CPU": 4},
					"cpu_percent": 3.0, "mem_used_bytes": 1 << 30, "mem_total_bytes": 8 << 30,
					"object_store_used_bytes": 0, "object_store_capacity_bytes": 1 << 30, "num_workers": 0},
			},
			"workers": {
				{"worker_id": "77aa", "node_id": "a1b2c3d4e5f6", "pid": 4242, "job_id": "01000000", "worker_type": "WORKER",
					"state": "LEASED", "start_time_ms": now - 5000, "log_file": "/tmp/rayo/logs/worker-4242.log"},
				{"worker_id": "88bb", "node_id": "a1b2c3d4e5f6", "pid": 4100, "job_id": "01000000", "worker_type": "DRIVER",
					"state": "LEASED", "start_time_ms": now - 9000},
			},
			"jobs": {
				{"job_id": "01000000", "status": "RUNNING", "entrypoint": "/usr/local/bin/pipeline --input s3://bucket",
					"node_id": "a1b2c3d4e5f6", "driver_address": "10.0.0.1:40123", "start_time_ms": now - 9000},
				{"job_id": "02000000", "status": "FAILED", "entrypoint": "/usr/local/bin/crashy",
					"message": "the driver died: pid 4711 on node a1b2c3d4 exited without rayo.Shutdown (killed or crashed)",
					"node_id": "a1b2c3d4e5f6", "start_time_ms": now - 8000, "end_time_ms": now - 7000},
			},
			"tasks": {
				task("aa01", "preprocess", "FINISHED", 4242, now-4000, now-3500),
			},
			"actors": {
				{"actor_id": "ac01", "class_name": "Counter", "state": "PENDING_CREATION", "name": "counter",
					"namespace": "default", "job_id": "01000000", "node_id": "", "pid": 0, "num_restarts": 0},
			},
			"placement_groups": {
				{"placement_group_id": "9f01", "name": "trainers", "state": "CREATED", "strategy": "STRICT_SPREAD",
					"bundles": []map[string]any{
						{"bundle_index": 0, "resources": map[string]float64{"CPU": 1}, "node_id": "a1b2c3d4e5f6"},
						{"bundle_index": 1, "resources": map[string]float64{"CPU": 1, "GPU": 1}, "node_id": "f6e5d4c3b2a1"},
					}, "reason": ""},
				{"placement_group_id": "9f02", "name": "", "state": "PENDING", "strategy": "PACK",
					"bundles": []map[string]any{{"bundle_index": 0, "resources": map[string]float64{"TPU": 8}, "node_id": ""}},
					"reason":  "no node can ever hold bundle 0 {TPU=8}"},
			},
		},
		logs: map[string]string{
			"a1b2c3d4e5f6/4242": "starting worker 4242\nprocessing <b>shard</b> 7 & 8\n",
		},
	}
}

// task builds a task attempt record on the head node's worker.
func task(id, name, state string, pid int, start, end int64) record {
	return record{"task_id": id, "attempt_number": 0, "name": name, "state": state, "type": "NORMAL_TASK",
		"job_id": "01000000", "actor_id": "", "parent_task_id": "", "node_id": "a1b2c3d4e5f6",
		"worker_id": "77aa", "worker_pid": pid, "required_resources": record{"CPU": 1},
		"creation_time_ms": start - 10, "start_time_ms": start, "end_time_ms": end,
		"error_type": "", "error_message": "",
		"state_times_ms": record{"PENDING_ARGS_AVAIL": start - 10, state: max(start, end)}}
}

// update runs f with the records locked.
func (f *fakeAPI) update(fn func(f *fakeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeAPI) close() { close(f.done) }

// taskQueries returns the queries /api/v0/tasks received so far.
func (f *fakeAPI) taskQueries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, record{"error": fmt.Sprintf(format, args...)})
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v0/"), "/")
	f.mu.Lock()
	status := f.failing[parts[0]]
	f.mu.Unlock()
	if status != 0 {
		apiError(w, status, "cannot reach the control store: connection refused")
		return
	}
	switch {
	case parts[0] == "logs":
		f.serveLogs(w, r)
	case parts[0] == "timeline":
		f.serveTimeline(w)
	case len(parts) == 2 && parts[1] == "summarize":
		f.serveSummary(w, parts[0])
	case len(parts) == 2:
		f.serveOne(w, parts[0], parts[1])
	case len(parts) == 1:
		f.serveList(w, r, parts[0])
	default:
		apiError(w, http.StatusNotFound, "no such endpoint %s", r.URL.Path)
	}
}

func (f *fakeAPI) serveList(w http.ResponseWriter, r *http.Request, resource string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all, ok := f.lists[resource]
	if !ok {
		apiError(w, http.StatusBadRequest, "unknown resource %q", resource)
		return
	}
	if resource == "tasks" {
		f.queries = append(f.queries, r.URL.RawQuery)
	}
	q := r.URL.Query()
	limit, offset := 100, 0
	var err error
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 10000 {
			apiError(w, http.StatusBadRequest, "bad limit %q", s)
			return
		}
	}
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			apiError(w, http.StatusBadRequest, "bad offset %q", s)
			return
		}
	}
	known := map[string]bool{}
	for _, rec := range all {
		for k := range rec {
			known[k] = true
		}
	}
	var kept []record
	for _, rec := range all {
		match := true
		for _, flt := range q["filter"] {
			key, want, neq := strings.Cut(flt, "!=")
			if !neq {
				var ok bool
				if key, want, ok = strings.Cut(flt, "="); !ok {
					apiError(w, http.StatusBadRequest, "malformed filter %q", flt)
					return
				}
			}
			if !known[key] {
				apiError(w, http.StatusBadRequest, "unknown filter key %q", key)
				return
			}
			match = match && (fmt.Sprint(rec[key]) == want) != neq
		}
		if match {
			kept = append(kept, rec)
		}
	}
	if resource == "tasks" {
		sort.SliceStable(kept, func(i, j int) bool {
			return kept[i]["creation_time_ms"].(int64) > kept[j]["creation_time_ms"].(int64)
		})
	}
	page := []record{}
	if offset < len(kept) {
		page = kept[offset:min(len(kept), offset+limit)]
	}
	writeJSON(w, http.StatusOK, record{"total": len(all), "num_filtered": len(kept), "offset": offset,
		"limit": limit, "dropped": 0, "warnings": []string{}, "result": page})
}

func (f *fakeAPI) serveOne(w http.ResponseWriter, resource, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	idKey := strings.TrimSuffix(resource, "s") + "_id"
	found := []record{}
	for _, rec := range f.lists[resource] {
		if rec[idKey] == id {
			found = append(found, rec)
		}
	}
	if len(found) == 0 {
		apiError(w, http.StatusNotFound, "no %s %q", idKey, id)
		return
	}
	writeJSON(w, http.StatusOK, record{"result": found})
}

func (f *fakeAPI) serveSummary(w http.ResponseWriter, resource string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	recs := f.lists[resource]
	summary := record{}
	for _, rec := range recs {
		key, field := rec["name"].(string), "name"
		if resource == "actors" {
			key, field = rec["class_name"].(string), "class_name"
		}
		s, ok := summary[key].(record)
		if !ok {
			s = record{field: key, "state_counts": map[string]int{}}
			if resource == "tasks" {
				s["type"] = rec["type"]
			}
			summary[key] = s
		}
		s["state_counts"].(map[string]int)[rec["state"].(string)]++
	}
	writeJSON(w, http.StatusOK, record{"total": len(recs), "dropped": 0, "summary": summary})
}

func (f *fakeAPI) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	text, ok := f.logs[q.Get("node_id")+"/"+q.Get("pid")]
	f.mu.Unlock()
	if !ok {
		apiError(w, http.StatusNotFound, "no worker with pid %s on node %s", q.Get("pid"), q.Get("node_id"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(text))
	if q.Get("follow") != "1" {
		return
	}
	w.(http.Flusher).Flush()
	for {
		select {
		case s := <-f.follow:
			_, _ = w.Write([]byte(s))
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		case <-f.done:
			return
		}
	}
}

func (f *fakeAPI) serveTimeline(w http.ResponseWriter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// As the API server does: nodes numbered, and named by metadata.
	events := []record{}
	pids := map[any]int{}
	for _, t := range f.lists["tasks"] {
		start, end := t["start_time_ms"].(int64), t["end_time_ms"].(int64)
		if start == 0 || end == 0 {
			continue
		}
		pid, ok := pids[t["node_id"]]
		if !ok {
			pid = len(pids) + 1
			pids[t["node_id"]] = pid
			events = append(events, record{"name": "process_name", "ph": "M", "pid": pid, "args": record{"name": fmt.Sprint("node ", t["node_id"])}})
		}
		events = append(events, record{"name": t["name"], "cat": "task", "ph": "X",
			"ts": start * 1000, "dur": (end - start) * 1000, "pid": pid, "tid": t["worker_pid"],
			"args": record{"task_id": t["task_id"], "state": t["state"]}})
	}
	writeJSON(w, http.StatusOK, events)
}
