package testcluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
