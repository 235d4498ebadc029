package testcluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// getJSON fetches url and decodes it into v, failing the test on a status
// other than 200.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

type list struct {
	Total    int
	Warnings []string
	Result   []map[string]any
}

// The head's API server sees every node, and tasks and actors wherever
// they ran, through the control store.
func TestDashboardOfACluster(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := Start(t, rayo, 1)
	b := c.AddNode(1)
	api := c.Dashboard() + "/api/v0"

	var nodes list
	getJSON(t, api+"/nodes", &nodes)
	if len(nodes.Result) != 2 {
		t.Fatalf("nodes: %v", nodes.Result)
	}
	for _, n := range nodes.Result {
		if n["state"] != "ALIVE" {
			t.Errorf("node %v", n)
		}
	}

	kv := run(t, c.Head, driver, "spread")
	waitFinishedOn(t, api, b, kv)
	checkJobsAndHeadMetrics(t, c, api)
	// Each node serves its raylet's metrics too.
	getJSON(t, api+"/nodes", &nodes)
	checkNodeMetrics(t, nodes)
	checkTasksCountedOnce(t, api, nodes)

	// The CLI, on the head's machine, finds the API server by itself.
	cli := headCLI(c, rayo)
	tasks := checkCLIStateAPI(t, cli, c, b)
	checkCLILogs(t, cli, b, tasks)
	checkCLIBadInput(t, cli)
}

// waitFinishedOn waits until the head lists a finished task that ran on
// node b.
func waitFinishedOn(t *testing.T, api string, b *Node, kv map[string]string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var tasks list
		getJSON(t, api+"/tasks?limit=10000&filter=state=FINISHED", &tasks)
		onB := 0
		for _, x := range tasks.Result {
			if x["node_id"] == b.ID() && x["worker_pid"].(float64) > 0 {
				onB++
			}
		}
		if onB > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished task of node %s listed by the head (spread ran on %s): %d tasks", b.ID(), kv["nodes"], len(tasks.Result))
		}
		time.Sleep(100 * time.Millisecond) // events reach the control store every 200 ms
	}
}

// checkJobsAndHeadMetrics checks that the head lists the driver's job and
// that its /metrics counts the cluster's tasks.
func checkJobsAndHeadMetrics(t *testing.T, c *Cluster, api string) {
	t.Helper()
	var jobs list
	getJSON(t, api+"/jobs", &jobs)
	if len(jobs.Result) == 0 || !strings.Contains(fmt.Sprint(jobs.Result[0]["entrypoint"]), "mn") {
		t.Fatalf("jobs: %v", jobs.Result)
	}
	resp, err := http.Get(c.Dashboard() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `rayo_tasks{state="FINISHED"}`) {
		t.Errorf("the head's /metrics lacks the cluster's tasks:\n%.2000s", body)
	}
}

// checkNodeMetrics checks that each listed node serves its raylet's
// metrics at its metrics address.
func checkNodeMetrics(t *testing.T, nodes list) {
	t.Helper()
	for _, n := range nodes.Result {
		addr, _ := n["metrics_address"].(string)
		if addr == "" {
			t.Fatalf("node %v has no metrics address", n["node_id"])
		}
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "rayo_object_store_capacity_bytes") {
			t.Errorf("node %v's /metrics: %.500s", n["node_id"], body)
		}
	}
}

// checkTasksCountedOnce checks that each node counts the attempts that ran
// on it, once: as many as the state API lists there (the driver, on the
// head, owns all of them).
func checkTasksCountedOnce(t *testing.T, api string, nodes list) {
	t.Helper()
	var finished list
	getJSON(t, api+"/tasks?limit=10000&filter=state=FINISHED", &finished)
	ranOn := map[string]int{}
	for _, x := range finished.Result {
		ranOn[fmt.Sprint(x["node_id"])]++
	}
	for _, n := range nodes.Result {
		id := fmt.Sprint(n["node_id"])
		url := "http://" + n["metrics_address"].(string) + "/metrics"
		counted := fmt.Sprintf(`rayo_tasks_finished_total{node_id=%q,state="FINISHED"} %d`, id, ranOn[id])
		timed := fmt.Sprintf(`rayo_task_execution_seconds_count{node_id=%q} %d`, id, ranOn[id])
		WaitFor(t, 5*time.Second, "node "+id+" to count its tasks once: "+counted, func() (bool, string) {
			resp, err := http.Get(url)
			if err != nil {
				return false, err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return strings.Contains(string(body), counted+"\n") && strings.Contains(string(body), timed+"\n"), metricLines(string(body), "rayo_task")
		})
	}
}

// headCLI returns a function that runs the rayo CLI on the head's machine
// and returns its combined output.
func headCLI(c *Cluster, rayo string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		out, err := c.Head.Command(rayo, args...).CombinedOutput()
		return string(out), err
	}
}

// checkCLIStateAPI checks rayo list, get, summary and timeline, and returns
// the tasks that rayo list tasks lists on node b.
func checkCLIStateAPI(t *testing.T, cli func(...string) (string, error), c *Cluster, b *Node) list {
	t.Helper()
	out, err := cli("list", "nodes")
	if err != nil || !strings.Contains(out, b.ID()) || !strings.Contains(out, c.Head.ID()) {
		t.Fatalf("rayo list nodes: %v\n%s", err, out)
	}
	out, err = cli("list", "tasks", "--filter", "node_id="+b.ID(), "--json")
	var tasks list
	if err != nil || json.Unmarshal([]byte(out), &tasks) != nil || len(tasks.Result) == 0 {
		t.Fatalf("rayo list tasks --json: %v\n%s", err, out)
	}
	id := fmt.Sprint(tasks.Result[0]["task_id"])
	if out, err = cli("get", "task", id); err != nil || !strings.Contains(out, id) {
		t.Fatalf("rayo get task: %v\n%s", err, out)
	}
	if out, err = cli("summary", "tasks"); err != nil || !strings.Contains(out, "FINISHED") {
		t.Fatalf("rayo summary tasks: %v\n%s", err, out)
	}
	trace := t.TempDir() + "/trace.json"
	if out, err = cli("timeline", "-o", trace); err != nil {
		t.Fatalf("rayo timeline: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(trace); err != nil || !strings.HasPrefix(strings.TrimSpace(string(b)), "[") {
		t.Fatalf("timeline file: %v %.200s", err, b)
	}
	return tasks
}

// checkCLILogs checks that rayo logs lists node b's worker logs, then
// shows the log of the worker that ran the first of tasks.
func checkCLILogs(t *testing.T, cli func(...string) (string, error), b *Node, tasks list) {
	t.Helper()
	out, err := cli("logs", "--node", b.ID())
	if err != nil || !strings.Contains(out, b.ID()) || !strings.Contains(out, "worker-") {
		t.Fatalf("rayo logs --node: %v\n%s", err, out)
	}
	pid := fmt.Sprint(int(tasks.Result[0]["worker_pid"].(float64)))
	if out, err = cli("logs", "--node", b.ID(), "--pid", pid); err != nil {
		t.Fatalf("rayo logs --node --pid: %v\n%s", err, out)
	}
}

// checkCLIBadInput checks that the CLI answers bad input with a clear
// message and a non-zero exit.
func checkCLIBadInput(t *testing.T, cli func(...string) (string, error)) {
	t.Helper()
	for _, args := range [][]string{
		{"logs", "--node", "feedfacecafe"},
		{"get", "task", "00112233445566778899aabbccddeeff"},
		{"list", "tasks", "--filter", "nosuchfield=1"},
		{"list", "gizmos"},
	} {
		if out, err := cli(args...); err == nil || !strings.Contains(out, "rayo:") {
			t.Errorf("rayo %v: %v\n%s", args, err, out)
		}
	}
}

// metricLines are the lines of a Prometheus text page that start with
// prefix.
func metricLines(page, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
