package dashboard

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/metrics"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Limits of the API.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
	// nodeTimeout bounds what one node may take to answer: a dead or
	// silent node gives a warning, not a hung request.
	nodeTimeout = 3 * time.Second
	// requestTimeout bounds a whole request (but a followed log).
	requestTimeout = 20 * time.Second
	// maxLogRead is how much of a log one read asks for.
	maxLogRead = 1 << 20
)

// Config sets up a Server.
type Config struct {
	Source Source
	// UI serves the web dashboard at /; nil serves a page naming the API.
	UI http.Handler
	// Metrics are served at /metrics, with the cluster's tasks and actors
	// by state (read from Source at each scrape).
	Metrics prometheus.Gatherer
	// Jobs, on a head, runs submitted jobs (/api/jobs/); nil: none.
	Jobs *jobs.Manager
	// Token is the cluster token that job submissions and stops must
	// carry; empty: none needed.
	Token string
	// ReadsNeedToken makes every request under /api/ and /metrics carry
	// Token, not only writes (see access.go).
	ReadsNeedToken bool
	// AllowedHosts are the names, besides IP addresses, localhost and
	// this machine's host name, that requests may give as their Host.
	AllowedHosts []string
}

// Server is the API server's HTTP handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	handler http.Handler // mux behind the access checks
	reg     *prometheus.Registry
}

// New makes the API server's handler.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}
	s.handler = s.guard(s.mux)
	s.reg.MustRegister(&stateCollector{src: cfg.Source})
	gather := prometheus.Gatherers{s.reg}
	if cfg.Metrics != nil {
		gather = append(gather, cfg.Metrics)
	}
	s.mux.Handle("GET /metrics", metrics.Handler(gather))
	s.routeJobs()
	s.mux.HandleFunc("GET /api/v0/healthz", s.healthz)
	s.mux.HandleFunc("GET /api/v0/logs", s.logs)
	s.mux.HandleFunc("GET /api/v0/timeline", s.timeline)
	s.mux.HandleFunc("GET /api/v0/{resource}", s.list)
	s.mux.HandleFunc("GET /api/v0/{resource}/summarize", s.summarize)
	s.mux.HandleFunc("GET /api/v0/{resource}/{id}", s.one)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, fmt.Errorf("no such API endpoint: %s %s (see docs/state-api.md)", r.Method, r.URL.Path))
	})
	if cfg.UI != nil {
		s.mux.Handle("/", cfg.UI)
	} else {
		s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "rayo API server: the state API is under /api/v0/ (docs/state-api.md), metrics at /metrics")
		})
	}
	return s
}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// fail writes an error as JSON.
func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func reply(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// sourceErr answers a failure of the source: 503 when the cluster cannot
// be reached.
func sourceErr(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrUnreachable) {
		fail(w, http.StatusServiceUnavailable, err)
		return
	}
	fail(w, http.StatusBadGateway, err)
}

// filter is one KEY=VALUE or KEY!=VALUE condition.
type filter struct {
	key, value string
	not        bool
}

// parseQuery reads filters, limit and offset for resource.
func parseQuery(resource string, r *http.Request) (fs []filter, limit, offset int, err error) {
	known := fields[resource]
	for _, f := range r.URL.Query()["filter"] {
		var x filter
		if k, v, ok := strings.Cut(f, "!="); ok {
			x = filter{k, v, true}
		} else if k, v, ok := strings.Cut(f, "="); ok {
			x = filter{key: k, value: v}
		} else {
			return nil, 0, 0, fmt.Errorf("bad filter %q: want KEY=VALUE or KEY!=VALUE", f)
		}
		x.key = strings.TrimSpace(x.key)
		found := false
		for _, k := range known {
			found = found || k == x.key
		}
		if !found {
			return nil, 0, 0, fmt.Errorf("bad filter %q: %s have no field %q (fields: %s)", f, resource, x.key, strings.Join(known, ", "))
		}
		fs = append(fs, x)
	}
	limit, offset = DefaultLimit, 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxLimit {
			return nil, 0, 0, fmt.Errorf("bad limit %q: want 1 to %d", v, MaxLimit)
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return nil, 0, 0, fmt.Errorf("bad offset %q: want 0 or more", v)
		}
	}
	return fs, limit, offset, nil
}

// text is a field's value as filters compare it.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func matches(rec record, fs []filter) bool {
	for _, f := range fs {
		if (text(rec[f.key]) == f.value) == f.not {
			return false
		}
	}
	return true
}

// listResult is the body of a list.
type listResult struct {
	Total       int      `json:"total"`
	NumFiltered int      `json:"num_filtered"`
	Offset      int      `json:"offset"`
	Limit       int      `json:"limit"`
	Dropped     int64    `json:"dropped"`
	Warnings    []string `json:"warnings"`
	Result      []record `json:"result"`
}

// collection is what a resource's records come from.
type collection struct {
	records  []record
	total    int   // held by the server (may exceed len(records) for tasks cut by the limit)
	dropped  int64 // tasks dropped by the table
	warnings []string
}

// collect gathers every record of resource.
func (s *Server) collect(ctx context.Context, resource string) (*collection, error) {
	c := &collection{}
	switch resource {
	case "nodes", "workers":
		nodes, stats, warns, err := s.nodesWithStats(ctx)
		if err != nil {
			return nil, err
		}
		c.warnings = warns
		for i, n := range nodes {
			if resource == "nodes" {
				c.records = append(c.records, nodeRecord(n, stats[i]))
			} else if stats[i] != nil {
				for _, w := range stats[i].Workers {
					c.records = append(c.records, workerRecord(w))
				}
			}
		}
		if resource == "workers" {
			sortBy(c.records, "start_time_ms", "worker_id")
		}
	case "jobs":
		jobs, err := s.cfg.Source.Jobs(ctx)
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			c.records = append(c.records, jobRecord(j))
		}
		sortBy(c.records, "start_time_ms", "job_id")
	case "tasks":
		l, err := s.cfg.Source.Tasks(ctx, &pb.StateQuery{})
		if err != nil {
			return nil, err
		}
		for _, t := range l.Tasks {
			c.records = append(c.records, taskRecord(t))
		}
		c.dropped = l.DroppedTasks
		if l.DroppedTasks > 0 {
			c.warnings = append(c.warnings, fmt.Sprintf("%d task attempts were dropped to keep the table within its limit (the oldest finished first); raise --max-task-records or RAYO_MAX_TASK_RECORDS to keep more", l.DroppedTasks))
		}
	case "actors":
		l, err := s.cfg.Source.Actors(ctx, &pb.StateQuery{})
		if err != nil {
			return nil, err
		}
		for _, a := range l.Actors {
			c.records = append(c.records, actorRecord(a))
		}
	case "objects":
		recs, warns, err := s.objects(ctx)
		if err != nil {
			return nil, err
		}
		c.records, c.warnings = recs, warns
	case "placement_groups":
		list, err := s.cfg.Source.PlacementGroups(ctx)
		if err != nil {
			return nil, err
		}
		for _, g := range list {
			c.records = append(c.records, placementGroupRecord(g))
		}
		sortBy(c.records, "creation_time_ms", "placement_group_id")
	default:
		return nil, errUnknownResource(resource)
	}
	c.total = len(c.records)
	return c, nil
}

func errUnknownResource(resource string) error {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Errorf("unknown resource %q (known: %s)", resource, strings.Join(names, ", "))
}

// sortBy orders records newest first by the time field, then by key.
func sortBy(recs []record, timeField, key string) {
	sort.SliceStable(recs, func(i, j int) bool {
		ti, _ := recs[i][timeField].(int64)
		tj, _ := recs[j][timeField].(int64)
		if ti != tj {
			return ti > tj
		}
		return text(recs[i][key]) < text(recs[j][key])
	})
}

// eachLiveNode calls ask for every live node at once, each within
// nodeTimeout, and returns a warning for each that failed.
func eachLiveNode(ctx context.Context, nodes []*pb.NodeInfo, what string, ask func(ctx context.Context, i int, n *pb.NodeInfo) error) []string {
	warns := make([]string, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n.State != "ALIVE" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nctx, cancel := context.WithTimeout(ctx, nodeTimeout)
			defer cancel()
			if err := ask(nctx, i, n); err != nil {
				warns[i] = fmt.Sprintf("node %s did not %s: %v", nodeName(n.NodeId), what, err)
			}
		}()
	}
	wg.Wait()
	var out []string
	for _, w := range warns {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// nodesWithStats lists the nodes and asks each live one for its stats; a
// node that does not answer in time gives a warning.
func (s *Server) nodesWithStats(ctx context.Context) ([]*pb.NodeInfo, []*pb.NodeStats, []string, error) {
	nodes, err := s.cfg.Source.Nodes(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	stats := make([]*pb.NodeStats, len(nodes))
	warns := eachLiveNode(ctx, nodes, "answer", func(ctx context.Context, i int, n *pb.NodeInfo) (err error) {
		stats[i], err = s.cfg.Source.NodeStats(ctx, n)
		return err
	})
	return nodes, stats, warns, nil
}

// objects merges every live node's store listing with what the owners
// say of their objects: one record per object.
func (s *Server) objects(ctx context.Context) ([]record, []string, error) {
	nodes, err := s.cfg.Source.Nodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	lists := make([][]*pb.ObjectRecord, len(nodes))
	workers := make([][]*pb.WorkerRecord, len(nodes))
	warns := eachLiveNode(ctx, nodes, "list its objects", func(ctx context.Context, i int, n *pb.NodeInfo) (err error) {
		if lists[i], err = s.cfg.Source.NodeObjects(ctx, n); err != nil {
			return err
		}
		if st, err := s.cfg.Source.NodeStats(ctx, n); err == nil {
			workers[i] = st.Workers // they own the objects of nested tasks
		}
		return nil
	})
	t := objectTable{byID: make(map[string]record)}
	for i, l := range lists {
		t.addStored(l, nodeName(nodes[i].NodeId))
	}
	owned, ownerWarns := s.ownedObjects(ctx, s.owners(ctx, workers))
	for _, l := range owned {
		t.addOwned(l)
	}
	return t.records(), append(warns, ownerWarns...), nil
}

// objectTable gathers the records of objects by ID, in the order first
// seen.
type objectTable struct {
	byID  map[string]record
	order []string
}

func (t *objectTable) get(id string, o *pb.ObjectRecord) record {
	r := t.byID[id]
	if r == nil {
		r = record{"object_id": id, "object_size_bytes": o.Size, "locations": []string{}, "kind": o.Kind, "location": "MEMORY"}
		t.byID[id] = r
		t.order = append(t.order, id)
	}
	return r
}

// addStored adds a node's store listing (node: the node's name, unless
// a record names one).
func (t *objectTable) addStored(l []*pb.ObjectRecord, node string) {
	for _, o := range l {
		id := hexOf(o.ObjectId)
		_, known := t.byID[id]
		r := t.get(id, o)
		if !known {
			r["owner_address"], r["reference_count"], r["job_id"] = o.OwnerAddr, -1, o.JobId
		}
		r["locations"] = append(r["locations"].([]string), cmp.Or(o.NodeId, node))
		if o.Location == "SPILLED" {
			r["location"] = o.Location
		}
		if o.Kind == "PRIMARY" {
			r["kind"] = o.Kind
		}
	}
}

// addOwned adds what an owner says: reference counts, and small objects
// that live in its memory rather than in a store.
func (t *objectTable) addOwned(l []*pb.ObjectRecord) {
	for _, o := range l {
		r := t.get(hexOf(o.ObjectId), o)
		r["reference_count"], r["owner_address"], r["job_id"] = o.RefCount, o.OwnerAddr, o.JobId
	}
}

func (t *objectTable) records() []record {
	sort.Strings(t.order)
	out := make([]record, 0, len(t.order))
	for _, id := range t.order {
		out = append(out, t.byID[id])
	}
	return out
}

// objectOwner is a process that may own objects: a running driver, or a
// worker that owns stored objects (nested tasks).
type objectOwner struct {
	addr string
	job  string // a driver's job, for its warning ("": a worker)
}

// owners lists the running drivers and the workers (of the nodes' stats)
// that may own objects, each once.
func (s *Server) owners(ctx context.Context, workers [][]*pb.WorkerRecord) []objectOwner {
	var owners []objectOwner
	seen := map[string]bool{}
	if jobs, err := s.cfg.Source.Jobs(ctx); err == nil {
		for _, j := range jobs {
			if j.State == "RUNNING" && j.DriverAddr != "" && !seen[j.DriverAddr] {
				seen[j.DriverAddr] = true
				owners = append(owners, objectOwner{j.DriverAddr, j.JobId})
			}
		}
	}
	for _, l := range workers {
		for _, w := range l {
			if w.Type == "WORKER" && w.State != "DEAD" && w.State != "STARTING" && w.Addr != "" && !seen[w.Addr] {
				seen[w.Addr] = true
				owners = append(owners, objectOwner{addr: w.Addr})
			}
		}
	}
	return owners
}

// ownedObjects asks every owner at once for its objects, each within
// nodeTimeout; a driver that does not answer gives a warning (a worker
// may have ended since, its objects with it).
func (s *Server) ownedObjects(ctx context.Context, owners []objectOwner) ([][]*pb.ObjectRecord, []string) {
	owned := make([][]*pb.ObjectRecord, len(owners))
	var warns []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, o := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			octx, cancel := context.WithTimeout(ctx, nodeTimeout)
			defer cancel()
			l, err := s.cfg.Source.OwnedObjects(octx, o.addr)
			if err != nil {
				if o.job != "" {
					mu.Lock()
					warns = append(warns, fmt.Sprintf("the driver of job %s did not list its objects: %v", o.job, err))
					mu.Unlock()
				}
				return
			}
			owned[i] = l
		}()
	}
	wg.Wait()
	return owned, warns
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	resource := r.PathValue("resource")
	if _, ok := fields[resource]; !ok {
		fail(w, http.StatusBadRequest, errUnknownResource(resource))
		return
	}
	fs, limit, offset, err := parseQuery(resource, r)
	if err != nil {
		fail(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	c, err := s.collect(ctx, resource)
	if err != nil {
		sourceErr(w, err)
		return
	}
	var kept []record
	for _, rec := range c.records {
		if matches(rec, fs) {
			kept = append(kept, rec)
		}
	}
	res := listResult{Total: c.total, NumFiltered: len(kept), Offset: offset, Limit: limit, Dropped: c.dropped, Warnings: c.warnings, Result: []record{}}
	if offset < len(kept) {
		res.Result = kept[offset:min(len(kept), offset+limit)]
	}
	if res.Warnings == nil {
		res.Warnings = []string{}
	}
	reply(w, res)
}

// idFields names the ID field of the resources that have one-record
// endpoints.
var idFields = map[string]string{"tasks": "task_id", "actors": "actor_id", "nodes": "node_id", "jobs": "job_id", "workers": "worker_id", "objects": "object_id", "placement_groups": "placement_group_id"}

func (s *Server) one(w http.ResponseWriter, r *http.Request) {
	resource, id := r.PathValue("resource"), strings.ToLower(r.PathValue("id"))
	key, ok := idFields[resource]
	if !ok {
		fail(w, http.StatusBadRequest, errUnknownResource(resource))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	var recs []record
	switch resource {
	case "tasks", "actors":
		b, err := hex.DecodeString(id)
		if err != nil || len(b) == 0 {
			fail(w, http.StatusBadRequest, fmt.Errorf("bad %s ID %q: want hex", strings.TrimSuffix(resource, "s"), id))
			return
		}
		if resource == "tasks" {
			l, err := s.cfg.Source.Tasks(ctx, &pb.StateQuery{Id: b})
			if err != nil {
				sourceErr(w, err)
				return
			}
			for _, t := range l.Tasks {
				recs = append(recs, taskRecord(t))
			}
		} else {
			l, err := s.cfg.Source.Actors(ctx, &pb.StateQuery{Id: b})
			if err != nil {
				sourceErr(w, err)
				return
			}
			for _, a := range l.Actors {
				recs = append(recs, actorRecord(a))
			}
		}
	default:
		c, err := s.collect(ctx, resource)
		if err != nil {
			sourceErr(w, err)
			return
		}
		for _, rec := range c.records {
			if text(rec[key]) == id {
				recs = append(recs, rec)
			}
		}
	}
	if len(recs) == 0 {
		fail(w, http.StatusNotFound, fmt.Errorf("no %s with ID %s", strings.TrimSuffix(resource, "s"), id))
		return
	}
	sort.SliceStable(recs, func(i, j int) bool { return text(recs[i]["attempt_number"]) < text(recs[j]["attempt_number"]) })
	reply(w, map[string]any{"result": recs})
}

func (s *Server) summarize(w http.ResponseWriter, r *http.Request) {
	resource := r.PathValue("resource")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	switch resource {
	case "tasks", "actors":
		c, err := s.collect(ctx, resource)
		if err != nil {
			sourceErr(w, err)
			return
		}
		by, nameKey := "name", "name"
		if resource == "actors" {
			by, nameKey = "class_name", "class_name"
		}
		sum := make(map[string]map[string]any)
		for _, rec := range c.records {
			k := text(rec[by])
			e := sum[k]
			if e == nil {
				e = map[string]any{nameKey: k, "state_counts": map[string]int{}}
				if resource == "tasks" {
					e["type"] = rec["type"]
				}
				sum[k] = e
			}
			e["state_counts"].(map[string]int)[text(rec["state"])]++
		}
		out := map[string]any{"total": c.total, "summary": sum}
		if resource == "tasks" {
			out["dropped"] = c.dropped
		}
		reply(w, out)
	case "objects":
		recs, warns, err := s.objects(ctx)
		if err != nil {
			sourceErr(w, err)
			return
		}
		sum := make(map[string]map[string]int64)
		var size int64
		for _, rec := range recs {
			n, _ := rec["object_size_bytes"].(int64)
			size += n
			for _, node := range rec["locations"].([]string) {
				e := sum[node]
				if e == nil {
					e = map[string]int64{"count": 0, "size_bytes": 0}
					sum[node] = e
				}
				e["count"]++
				e["size_bytes"] += n
			}
		}
		if warns == nil {
			warns = []string{}
		}
		reply(w, map[string]any{"total": len(recs), "total_size_bytes": size, "summary": sum, "warnings": warns})
	default:
		fail(w, http.StatusBadRequest, fmt.Errorf("no summary of %q (summaries: tasks, actors, objects)", resource))
	}
}
