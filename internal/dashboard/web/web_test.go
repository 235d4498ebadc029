package web

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/dashboard/web/webtest"
)

// handlerCase is one request to the static handler and the answer it must get.
type handlerCase struct {
	name, method, path string
	status             int
	ctype              string
	index              bool // the body is index.html
}

// handlerCases lists the requests TestHandler sends.
var handlerCases = []handlerCase{
	{"root", "GET", "/", 200, "text/html; charset=utf-8", true},
	{"index", "GET", "/index.html", 200, "text/html; charset=utf-8", true},
	{"client route", "GET", "/tasks/abc", 200, "text/html; charset=utf-8", true},
	{"script", "GET", "/app.js", 200, "text/javascript; charset=utf-8", false},
	{"page module", "GET", "/timeline.js", 200, "text/javascript; charset=utf-8", false},
	{"style", "GET", "/style.css", 200, "text/css; charset=utf-8", false},
	{"icon", "GET", "/favicon.svg", 200, "image/svg+xml", false},
	{"head", "HEAD", "/app.js", 200, "text/javascript; charset=utf-8", false},
	{"missing asset", "GET", "/nope.js", 404, "", false},
	{"missing api", "GET", "/api/v0/nodes", 404, "", false},
	{"dot-dot", "GET", "/../../etc/passwd", 200, "text/html; charset=utf-8", true},
	{"post", "POST", "/", 405, "", false},
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	index, err := fs.ReadFile(staticFS, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range handlerCases {
		t.Run(tc.name, func(t *testing.T) { checkHandlerCase(t, srv.URL, tc, index) })
	}

	t.Run("revalidation", func(t *testing.T) { checkRevalidation(t, srv.URL) })
}

// checkHandlerCase sends tc's request to the server at url and checks the
// status, the headers and the body (index is index.html).
func checkHandlerCase(t *testing.T, url string, tc handlerCase, index []byte) {
	t.Helper()
	req, _ := http.NewRequest(tc.method, url+tc.path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != tc.status {
		t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
	}
	if tc.status != 200 {
		return
	}
	if got := resp.Header.Get("Content-Type"); got != tc.ctype {
		t.Errorf("Content-Type %q, want %q", got, tc.ctype)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", got)
	}
	if resp.Header.Get("ETag") == "" {
		t.Error("no ETag")
	}
	if tc.index {
		if string(body) != string(index) {
			t.Error("body is not index.html")
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("Content-Security-Policy %q does not confine the page to its origin", csp)
		}
	}
	if tc.method == "HEAD" && len(body) != 0 {
		t.Errorf("HEAD answered a body of %d bytes", len(body))
	}
}

// checkRevalidation checks that the server at url answers 304 to a request
// with app.js's current ETag.
func checkRevalidation(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("GET", url+"/app.js", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("status %d for a current ETag, want 304", again.StatusCode)
	}
}

// TestAssetsAreSelfContained checks that the dashboard needs no network
// beyond its own server, and never parses text as HTML.
func TestAssetsAreSelfContained(t *testing.T) {
	url := regexp.MustCompile(`(https?:)?//[a-zA-Z0-9.-]+\.[a-z]{2,}`)
	unsafe := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)
	err := fs.WalkDir(staticFS, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(staticFS, name)
		if err != nil {
			return err
		}
		text := strings.ReplaceAll(string(data), "http://www.w3.org/2000/svg", "") // a namespace, not a fetch
		if m := url.FindString(text); m != "" {
			t.Errorf("%s refers to an external URL %q", name, m)
		}
		if m := unsafe.FindString(text); m != "" {
			t.Errorf("%s uses %s", name, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDashboard drives every page in a headless Chromium against an
// in-test state API whose records change between steps.
func TestDashboard(t *testing.T) {
	d := startDashboard(t)
	t.Run("overview", d.overview)
	t.Run("jobs", d.jobs)
	t.Run("tasks", d.tasks)
	t.Run("actors", d.actors)
	t.Run("placement groups", d.groups)
	t.Run("logs", d.logs)
	t.Run("timeline", d.timeline)
	t.Run("api errors", d.apiErrors)
}

// wait is how long TestDashboard waits for the page to show a thing.
const wait = 5 * time.Second

// must fails t if err is not nil.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dashboardPages is what the steps of TestDashboard share: the browser, the
// in-test state API, the server's URL and the time the records start from.
type dashboardPages struct {
	b   *webtest.Browser
	api *fakeAPI
	url string
	now int64
}

// startDashboard starts the browser and a server of the dashboard and the
// fake state API. It ends them when t ends.
func startDashboard(t *testing.T) *dashboardPages {
	t.Helper()
	b := webtest.Start(t)
	api := newFakeAPI()
	mux := http.NewServeMux()
	mux.Handle("/api/v0/", api)
	mux.HandleFunc("GET /api/jobs/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"enabled": true, "result": [
			{"submission_id": "rayosubmit_01", "entrypoint": "./train --epochs 3", "status": "SUCCEEDED", "exit_code": 0, "message": "", "start_time_ms": 1, "end_time_ms": 2},
			{"submission_id": "rayosubmit_02", "entrypoint": "./etl", "status": "FAILED", "exit_code": 4, "message": "the entrypoint exited with code 4", "start_time_ms": 3, "end_time_ms": 4}]}`)
	})
	mux.HandleFunc("GET /api/jobs/rayosubmit_02/logs", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "loading <rows>\nerror: no input\n")
	})
	mux.Handle("/", Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(api.close) // runs first: ends the follow streams so Close can return
	return &dashboardPages{b: b, api: api, url: srv.URL, now: time.Now().UnixMilli()}
}

// overview checks the overview page, and that it follows a task starting,
// an actor coming up and a node getting busy.
func (d *dashboardPages) overview(t *testing.T) {
	b, api, now := d.b, d.api, d.now
	must(t, b.Navigate(d.url+"/"))
	must(t, b.WaitText("#page td", "a1b2c3d4e5f6", wait))
	must(t, b.WaitText("#count-nodes .value", "2 / 2", wait))
	must(t, b.WaitText("#page .meter", "3.0 GiB / 16.0 GiB", wait))
	must(t, b.WaitText("#page .meter", "1 / 8", wait)) // CPUs used of the cluster's total
	must(t, b.WaitText("#count-running .value", "0", wait))

	// A task starts, an actor comes up, a node gets busy: the page follows.
	api.update(func(f *fakeAPI) {
		f.lists["tasks"] = append(f.lists["tasks"], task("bb01", "train_model", "RUNNING", 4242, now-1000, 0))
		a := f.lists["actors"][0]
		a["state"], a["node_id"], a["pid"], a["worker_id"] = "ALIVE", "0f0e0d0c0b0a", 5151, "99cc"
		f.lists["nodes"][1]["cpu_percent"] = 73.5
	})
	must(t, b.WaitText("#count-running .value", "1", wait))
	must(t, b.WaitText("#count-actors .value", "1", wait))
	must(t, b.WaitText("#page .meter", "73.5 %", wait))
	b.CheckNoProblems(t)
}

// jobs checks the jobs page: the cluster's jobs, and the submitted programs
// with how they ended and their output.
func (d *dashboardPages) jobs(t *testing.T) {
	b := d.b
	must(t, b.Click(`nav a[href="#/jobs"]`))
	must(t, b.WaitText("#page td", "/usr/local/bin/pipeline --input s3://bucket", wait))
	must(t, b.WaitText("#page td .badge", "RUNNING", wait))
	must(t, b.WaitText("#page td", "the driver died: pid 4711", wait)) // how a job ended
	// Submitted programs, with how they ended and their output.
	must(t, b.WaitText("#submissions td", "./train --epochs 3", wait))
	must(t, b.WaitText("#submissions td", "the entrypoint exited with code 4", wait))
	must(t, b.Click(`#submissions tr:nth-child(2) a`))
	must(t, b.WaitText("#submission-log", "error: no input", wait))
	b.CheckNoProblems(t)
}

// tasks checks the tasks page: a failed task's error, the filters, a task's
// attempts and pages of tasks.
func (d *dashboardPages) tasks(t *testing.T) {
	b, api, now := d.b, d.api, d.now
	must(t, b.Click(`nav a[href="#/tasks"]`))
	must(t, b.WaitText("#page td", "train_model", wait))
	must(t, b.WaitText("#page td .badge", "RUNNING", wait))

	const stack = "TaskError: division by zero in fail_task\ngoroutine 7 [running]:\nmain.failTask(...)\n\t/src/main.go:42 +0x1d"
	api.update(func(f *fakeAPI) {
		ft := task("cc01", "fail_task", "FAILED", 4242, now-800, now-700)
		ft["error_type"], ft["error_message"] = "TaskError", stack
		f.lists["tasks"] = append(f.lists["tasks"], ft)
	})
	must(t, b.WaitText("details.error summary", "division by zero in fail_task", wait))
	must(t, b.Click("details.error summary"))
	must(t, b.WaitText("details.error pre", "/src/main.go:42 +0x1d", wait))
	// The expanded error stays open across the page's refreshes.
	seen := len(api.taskQueries())
	waitUntil(t, wait, "two refreshes of the task list", func() bool { return len(api.taskQueries()) >= seen+2 })
	must(t, b.WaitText("details.error pre", "/src/main.go:42", time.Second))

	// Filters become filter=KEY=VALUE parameters.
	must(t, b.SetValue("#filter-state", "FAILED"))
	must(t, b.WaitJS(`![...document.querySelectorAll('#page td')].some((e) => e.textContent === 'train_model')`,
		wait, "the RUNNING task to be filtered out"))
	must(t, b.WaitText("#page td", "fail_task", wait))
	must(t, b.SetValue("#filter-name", "no_such_task"))
	must(t, b.WaitText("#page td", "No tasks match.", wait))
	if q := strings.Join(api.taskQueries(), "\n"); !strings.Contains(q, "filter=state%3DFAILED&filter=name%3Dno_such_task") {
		t.Errorf("the filters did not reach the API; queries:\n%s", q)
	}
	must(t, b.SetValue("#filter-name", ""))

	// A task's ID opens all its attempts.
	must(t, b.Click(`#page td a[title="cc01"]`))
	must(t, b.WaitText("#task-detail", "Task cc01", wait))
	must(t, b.WaitText("#task-detail td", "CPU: 1", wait))

	// Pages of 25 over 33 tasks.
	api.update(func(f *fakeAPI) {
		for i := range 28 {
			f.lists["tasks"] = append(f.lists["tasks"],
				task(fmt.Sprintf("dd%02d", i), "batch", "FINISHED", 4242, now-600+int64(i), now-500+int64(i)))
		}
	})
	must(t, b.SetValue("#filter-state", ""))
	// The tasks of one process share the first half of their IDs, so
	// the list shows IDs whole, and a sub-millisecond task says so.
	const first, second = "e5d6d1a67a96febc00000000000007d8", "e5d6d1a67a96febc00000000000007d9"
	api.update(func(f *fakeAPI) {
		f.lists["tasks"] = append(f.lists["tasks"],
			task(first, "quick", "FINISHED", 4242, now-650, now-650), task(second, "quick", "FINISHED", 4242, now-640, now-640))
	})
	must(t, b.WaitText(`#page td a[title="`+first+`"]`, first, wait))
	must(t, b.WaitText(`#page td a[title="`+second+`"]`, second, wait))
	must(t, b.WaitText("#page td", "< 1 ms", wait))

	must(t, b.SetValue("#page-size", "25"))
	must(t, b.WaitText("#range", "1–25 of 33 matching", wait))
	must(t, b.Click("#older"))
	must(t, b.WaitText("#range", "26–33 of 33 matching", wait))
	if q := strings.Join(api.taskQueries(), "\n"); !strings.Contains(q, "limit=25&offset=25") {
		t.Errorf("the second page was not asked for; queries:\n%s", q)
	}
	b.CheckNoProblems(t)
}

// actors checks the actors page, with a live actor and one out of restarts.
func (d *dashboardPages) actors(t *testing.T) {
	b, api := d.b, d.api
	api.update(func(f *fakeAPI) {
		f.lists["actors"] = append(f.lists["actors"], record{"actor_id": "ac02", "class_name": "Cache",
			"state": "DEAD", "name": "", "node_id": "a1b2c3d4e5f6", "pid": 4300, "num_restarts": 3,
			"death_cause": "OUT_OF_RESTARTS", "death_message": "worker exited: killed by the OOM killer"})
	})
	must(t, b.Click(`nav a[href="#/actors"]`))
	must(t, b.WaitText("#page td", "Counter", wait))
	must(t, b.WaitText("#page td .badge", "ALIVE", wait))
	must(t, b.WaitText("#page td", "default/counter", wait))
	must(t, b.WaitText("#page td a", "5151", wait))
	must(t, b.WaitText("#page td", "killed by the OOM killer", wait))
	must(t, b.WaitText("#page td .badge", "OUT_OF_RESTARTS", wait))
	b.CheckNoProblems(t)
}

// groups checks the placement groups page: a bundle's node, and why a group
// cannot be placed.
func (d *dashboardPages) groups(t *testing.T) {
	b := d.b
	must(t, b.Click(`nav a[href="#/groups"]`))
	must(t, b.WaitText("#page td", "trainers", wait))
	must(t, b.WaitText("#page td .badge", "CREATED", wait))
	must(t, b.WaitText("#page td .bundle", "1: CPU 1, GPU 1 on f6e5d4c3b2a1", wait))
	must(t, b.WaitText("#page td", "no node can ever hold bundle 0 {TPU=8}", wait))
	b.CheckNoProblems(t)
}

// logs checks a worker's log: shown as text, and followed while new lines come.
func (d *dashboardPages) logs(t *testing.T) {
	b, api := d.b, d.api
	_, err := webtest.Eval[string](b, `location.hash = "#/logs?node_id=a1b2c3d4e5f6&pid=4242"`)
	must(t, err)
	must(t, b.WaitText("#worker", "pid 4242 · WORKER · LEASED", wait))
	must(t, b.WaitText("#log", "processing <b>shard</b> 7 & 8", wait)) // shown as text, not markup
	if n, err := webtest.Eval[int](b, `document.querySelectorAll('#log *').length`); err != nil || n != 0 {
		t.Errorf("the log's text became %d elements (%v)", n, err)
	}
	must(t, b.Click("#follow"))
	select {
	case api.follow <- "a line written while following\n":
	case <-time.After(wait):
		t.Fatal("the page did not open a follow stream")
	}
	must(t, b.WaitText("#log", "a line written while following", wait))
	must(t, b.WaitText("#log", "starting worker 4242", wait))
	must(t, b.Click("#follow")) // and off again: the stream is closed
	must(t, b.WaitText("#log-status", "last 1000 lines", wait))
	b.CheckNoProblems(t)
}

// timeline checks the timeline: a bar for each finished or failed attempt,
// a tooltip and the download link.
func (d *dashboardPages) timeline(t *testing.T) {
	b := d.b
	must(t, b.Click(`nav a[href="#/timeline"]`))
	// Finished and failed attempts have bars: 1 + 1 + 2 + 28.
	must(t, b.WaitJS(`document.querySelectorAll('#timeline rect.bar').length === 32`, wait, "32 task bars"))
	must(t, b.WaitJS(`document.querySelectorAll('#timeline rect.bar.FAILED').length === 1`, wait, "a FAILED bar"))
	must(t, b.WaitText("#timeline text", "node a1b2c3d4e5f6", wait))
	must(t, b.Hover(`#timeline rect.bar.FAILED`))
	must(t, b.WaitText(".tooltip", "fail_task 100 ms", wait))
	href, err := webtest.Eval[string](b, `document.querySelector('a[download]').href`)
	must(t, err)
	if !strings.HasSuffix(href, "/api/v0/timeline") {
		t.Errorf("the download link goes to %q", href)
	}
	b.CheckNoProblems(t)
}

// apiErrors checks that the page shows the API's errors, and clears them once
// the API answers again.
func (d *dashboardPages) apiErrors(t *testing.T) {
	b, api := d.b, d.api
	api.update(func(f *fakeAPI) { f.failing["actors"] = http.StatusServiceUnavailable })
	must(t, b.Click(`nav a[href="#/actors"]`))
	must(t, b.WaitText("#errors", "API error: 503: cannot reach the control store: connection refused", wait))
	api.update(func(f *fakeAPI) { delete(f.failing, "actors") })
	must(t, b.WaitJS(`document.getElementById('errors').hidden`, wait, "the error to clear"))
	must(t, b.WaitText("#page td", "Counter", wait))

	// A worker the server does not know: a 404 shown on the page.
	_, err := webtest.Eval[string](b, `location.hash = "#/logs?node_id=ffffffffffff&pid=1"`)
	must(t, err)
	must(t, b.WaitText("#errors", "no worker with pid 1 on node ffffffffffff", wait))
	b.CheckNoProblems(t)
}

// waitUntil polls cond until it holds, failing t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestDashboardAsksForTheToken drives the dashboard against an API that,
// as one beyond loopback does, answers 401 to reads without the cluster
// token: the page asks for it once, then sends it with every request.
func TestDashboardAsksForTheToken(t *testing.T) {
	b := webtest.Start(t)
	api := newFakeAPI()
	const token = "0123456789abcdef0123456789abcdef"
	var mu sync.Mutex
	var refused, accepted int
	mux := http.NewServeMux()
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := r.Header.Get("Authorization") == "Bearer "+token
		if ok {
			accepted++
		} else {
			refused++
		}
		mu.Unlock()
		if !ok {
			apiError(w, http.StatusUnauthorized, "reading it needs the cluster token")
			return
		}
		if strings.HasPrefix(r.URL.Path, "/api/jobs/") {
			writeJSON(w, http.StatusOK, map[string]any{"enabled": false, "result": []any{}})
			return
		}
		api.ServeHTTP(w, r)
	}))
	mux.Handle("/", Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(api.close)

	prompts := b.AnswerPrompts(token)
	if err := b.Navigate(srv.URL + "/"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitText("#count-nodes .value", "2 / 2", 5*time.Second); err != nil {
		t.Fatalf("%v (prompts: %q)", err, prompts())
	}
	if p := prompts(); len(p) != 1 || !strings.Contains(p[0], "token") {
		t.Fatalf("the page opened %q, want one prompt for the token", p)
	}
	mu.Lock()
	r0, a0 := refused, accepted
	mu.Unlock()
	if a0 == 0 {
		t.Fatal("no request carried the token")
	}
	// The page refreshes: every later request carries the token.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		a := accepted
		mu.Unlock()
		if a > a0+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page made %d requests with the token in 5s after the first", a-a0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != r0 {
		t.Fatalf("%d requests went without the token after it was given", refused-r0)
	}
	if len(prompts()) != 1 {
		t.Fatalf("the page asked %d times", len(prompts()))
	}
}

// TestHandlerIgnoresRange sends the attack input of GO-2026-6609 (a Range
// header of many small ranges, which makes Go 1.26.8's http.ServeContent
// spend CPU without bound) to the static handler, which needs no token:
// the handler must answer the whole asset, never parse the ranges.
func TestHandlerIgnoresRange(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	want, err := fs.ReadFile(staticFS, "static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 200 {
		t.Fatalf("app.js has %d bytes; the test needs more than its 200 ranges", len(want))
	}
	var ranges []string
	for i := 0; i < 200; i++ {
		ranges = append(ranges, fmt.Sprintf("%d-%d", i, i))
	}
	for _, h := range []map[string]string{
		{"Range": "bytes=" + strings.Join(ranges, ",")},
		{"Range": "bytes=0-0", "If-Range": "anything"},
		{"Range": "bytes=-1"},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequest(method, srv.URL+"/app.js", nil)
			for k, v := range h {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s with Range %.40q: status %d, want 200 (ranges ignored)", method, h["Range"], resp.StatusCode)
			}
			if cr := resp.Header.Get("Content-Range"); cr != "" {
				t.Errorf("%s: Content-Range %q for an ignored Range", method, cr)
			}
			if got := resp.Header.Get("Content-Length"); got != fmt.Sprint(len(want)) {
				t.Errorf("%s: Content-Length %q, want %d", method, got, len(want))
			}
			if method == "GET" && string(body) != string(want) {
				t.Errorf("GET answered %d bytes, not the whole app.js (%d)", len(body), len(want))
			}
		}
	}
	// Revalidation still works, with a list of tags and weak ones.
	for _, inm := range []string{`"x", ` + etagOf(t, srv.URL+"/app.js"), "W/" + etagOf(t, srv.URL+"/app.js"), "*"} {
		req, _ := http.NewRequest("GET", srv.URL+"/app.js", nil)
		req.Header.Set("If-None-Match", inm)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match %s: status %d, want 304", inm, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/app.js", nil)
	req.Header.Set("If-None-Match", `"stale"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a stale ETag: status %d, want 200", resp.StatusCode)
	}
}

func etagOf(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("ETag")
}
