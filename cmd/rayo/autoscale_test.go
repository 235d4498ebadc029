package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/autoscaler"
)

// autoscalerStatus reads the autoscaler's part of rayo status --json.
func (e clusterEnv) autoscalerStatus(t *testing.T) *autoscaler.Status {
	t.Helper()
	out, err := e.cmd("status", "--json").Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var doc struct {
		Autoscaler *autoscaler.Status `json:"autoscaler"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return doc.Autoscaler
}

// TestAutoscalerLocalGrowsAndShrinks is issue 16's end-to-end test: a
// 1-CPU head autoscaling with the local provider (at most 2 workers), a
// driver whose three 1-CPU tasks must all run at once. The cluster grows
// to 3 nodes, the work finishes, and it shrinks back to the head after
// the idle timeout. A task no node type can hold still fails at once.
func TestAutoscalerLocalGrowsAndShrinks(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	driver := filepath.Join(t.TempDir(), "autoscale")
	if out, err := exec.Command("go", "build", "-o", driver, "./testdata/autoscale").CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	head := e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "1",
		"--autoscaler", "local", "--max-workers", "2", "--idle-timeout", "3s", "--autoscaler-interval", "200ms")
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	run := autoscaleDriverRunner(t, e, driver, addr)

	st := e.autoscalerStatus(t)
	if st == nil || st.Provider != "local" || len(st.NodeTypes) != 1 || st.NodeTypes[0].Resources["CPU"] != 1 || st.NodeTypes[0].Max != 2 {
		t.Fatalf("autoscaler status at start: %+v", st)
	}
	checkAutoscalerGrows(t, e, run)
	checkAutoscalerShrinks(t, e)
	checkAutoscalerStandingRequest(t, e, run)
	stopHeadCleanly(t, head)
}

// autoscaleDriverRunner returns a func that runs the autoscale driver with
// args against the cluster at addr, and returns the key=value lines it
// printed. The test fails if the driver does.
func autoscaleDriverRunner(t *testing.T, e clusterEnv, driver, addr string) func(args ...string) map[string]string {
	return func(args ...string) map[string]string {
		t.Helper()
		c := exec.Command(driver, args...)
		c.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS="+addr, "RAYO_TOKEN=")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("driver %v: %v\n%s", args, err, out)
		}
		kv := map[string]string{}
		for _, m := range regexp.MustCompile(`(?m)^(\w+)=(.*)$`).FindAllStringSubmatch(string(out), -1) {
			kv[m[1]] = m[2]
		}
		return kv
	}
}

// checkAutoscalerGrows checks that a task no node type can hold fails at
// once, and that three 1-CPU tasks at once grow the cluster to 3 nodes.
func checkAutoscalerGrows(t *testing.T, e clusterEnv, run func(args ...string) map[string]string) {
	t.Helper()
	// No node type has 64 CPUs: infeasible at once, and nothing launched.
	big := run("big")
	if big["infeasible"] != "true" {
		t.Fatalf("a task no node type can hold: %v", big)
	}
	if ms, _ := strconv.Atoi(big["ms"]); ms > 5000 {
		t.Fatalf("the infeasible task took %d ms to fail", ms)
	}

	grow := run("grow", t.TempDir())
	if grow["nodes"] != "3" {
		t.Fatalf("three tasks at once on a 1-CPU head with max 2 workers ran on %s node(s), want 3", grow["nodes"])
	}
	t.Logf("demand to 3 CPUs in use (two nodes launched and usable): %s ms", grow["all_running_ms"])
	if st, err := e.status(); err != nil || count(st, "ALIVE") != 3 {
		t.Fatalf("after the work: %+v %v, want 3 nodes alive", st, err)
	}
	text, err := e.cmd("status").CombinedOutput()
	if err != nil || !strings.Contains(string(text), "autoscaler: local provider") || !regexp.MustCompile(`(?m)^\s+worker\s+CPU 1\s+0\s+2\s+2\s+0$`).Match(text) {
		t.Fatalf("rayo status: %v\n%s", err, text)
	}
}

// checkAutoscalerShrinks waits for the idle nodes to be drained and
// released, and checks that the autoscaler then runs and launches none.
func checkAutoscalerShrinks(t *testing.T, e clusterEnv) {
	t.Helper()
	// Idle for 3 s, the two nodes are drained and released.
	sawIdle := false
	d := e.waitFor(t, 60*time.Second, "the cluster back to the head alone", func(st status) bool {
		if a := e.autoscalerStatus(t); a != nil && len(a.IdleNodes) > 0 {
			sawIdle = true
		}
		return count(st, "ALIVE") == 1
	})
	t.Logf("shrunk back to the head %v after the work ended (idle timeout 3s)", d)
	if !sawIdle {
		t.Log("the idle timers were not caught in rayo status (the release came between two polls)")
	}
	// The released nodes were drained first: DEAD as drained, not failed.
	for _, n := range e.drainStatus(t).Nodes {
		if !n.Head && (n.State != "DEAD" || !strings.Contains(n.DeathReason, "drained")) {
			t.Errorf("released node %s: %s, %q; want DEAD, drained", n.NodeID, n.State, n.DeathReason)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		a := e.autoscalerStatus(t)
		if a != nil && a.NodeTypes[0].Running == 0 && len(a.PendingLaunches) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("autoscaler status after the shrink: %+v", a)
		}
		time.Sleep(100 * time.Millisecond) // polling the head's next rounds
	}
}

// checkAutoscalerStandingRequest checks that a standing request for 3 CPUs
// grows the cluster with no task asking, and keeps the nodes past the idle
// timeout; withdrawn, they go.
func checkAutoscalerStandingRequest(t *testing.T, e clusterEnv, run func(args ...string) map[string]string) {
	t.Helper()
	if got := run("request", "3"); got["requested"] != "3" {
		t.Fatalf("request: %v", got)
	}
	e.waitFor(t, 60*time.Second, "3 nodes for the standing request", func(st status) bool { return count(st, "ALIVE") == 3 })
	kept := time.Now()
	for time.Since(kept) < 5*time.Second { // watching that nothing is released: more than the idle timeout
		if st, err := e.status(); err != nil || count(st, "ALIVE") != 3 {
			t.Fatalf("with the request standing: %+v %v, want 3 nodes kept", st, err)
		}
		time.Sleep(200 * time.Millisecond) // polling other processes
	}
	run("request", "0")
	e.waitFor(t, 60*time.Second, "the request withdrawn, back to the head alone", func(st status) bool { return count(st, "ALIVE") == 1 })
}

// stopHeadCleanly sends SIGTERM to the head and checks that it exits
// without error within 30s.
func stopHeadCleanly(t *testing.T, head *exec.Cmd) {
	t.Helper()
	if err := head.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- head.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("head exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the head did not stop within 30s of SIGTERM")
	}
}

// TestAutoscalerWideTask: with autoscaling on, a 2-CPU task on a 1-CPU
// head waits for a 2-CPU node of the type --autoscaler-node-types gives,
// rather than failing as infeasible. (Its name is short: the nodes'
// sockets live below the test's folder, and their paths are bounded.)
func TestAutoscalerWideTask(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	driver := filepath.Join(t.TempDir(), "autoscale")
	if out, err := exec.Command("go", "build", "-o", driver, "./testdata/autoscale").CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	port := freePort(t)
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "1", "--autoscaler", "local",
		"--autoscaler-node-types", `[{"name":"cpu2","resources":{"CPU":2},"max_workers":1}]`, "--idle-timeout", "60s", "--autoscaler-interval", "200ms")
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	c := exec.Command(driver, "wide")
	c.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS="+fmt.Sprintf("127.0.0.1:%d", port), "RAYO_TOKEN=")
	out, err := c.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "node=") {
		t.Fatalf("a 2-CPU task with a 2-CPU node type: %v\n%s", err, out)
	}
	wideMS, _ := strconv.Atoi(regexp.MustCompile(`ms=(\d+)`).FindStringSubmatch(string(out))[1])
	st, err := e.status()
	if err != nil || count(st, "ALIVE") != 2 {
		t.Fatalf("after the wide task: %+v %v, want the head and one cpu2 node", st, err)
	}
	for _, n := range st.Nodes {
		if strings.Contains(string(out), "node="+n.NodeID[:8]) && n.Resources["CPU"] != 2 {
			t.Fatalf("the task ran on %+v, not the 2-CPU node", n)
		}
	}
	// The floor, in the same run: a node started by hand, from its start
	// to rayo status showing it alive.
	start := time.Now()
	e.daemon(t, "start", "--address", fmt.Sprintf("127.0.0.1:%d", port), "--num-cpus", "1")
	e.waitFor(t, 30*time.Second, "a node started by hand", func(st status) bool { return count(st, "ALIVE") == 3 })
	floor := time.Since(start)
	t.Logf("a 2-CPU task on a 1-CPU head ran on a node launched for it %d ms after submission; a node started by hand registered in %d ms (ratio %.2f)",
		wideMS, floor.Milliseconds(), float64(wideMS)/float64(floor.Milliseconds()))
}

func TestStartRefusesBadAutoscalerFlags(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--address", "127.0.0.1:1", "--autoscaler", "local"}, "--autoscaler is for the head"},
		{[]string{"--head", "--autoscaler", "aws"}, `--autoscaler "aws": want local or kubernetes`},
		{[]string{"--head", "--max-workers", "3"}, "--max-workers needs --autoscaler"},
		{[]string{"--head", "--autoscaler", "local", "--max-workers", "-1"}, "--max-workers -1"},
		{[]string{"--head", "--autoscaler", "local", "--idle-timeout", "0s"}, "--idle-timeout 0s"},
		{[]string{"--head", "--autoscaler", "local", "--autoscaler-node-types", `{"name":"x"}`}, "want a JSON list"},
		{[]string{"--head", "--autoscaler", "local", "--autoscaler-node-types", `[{"name":"x","resources":{"CPU":1},"min_workers":3,"max_workers":1}]`}, "min_workers (3) <= max_workers (1)"},
		{[]string{"--head", "--autoscaler", "local", "--autoscaler-node-types", `[{"name":"x","resources":{"CPU":1},"cpus":4}]`}, `unknown field "cpus"`},
	} {
		out, err := e.cmd(append([]string{"start", "--block", "--port", fmt.Sprint(freePort(t))}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("rayo start %v: %v\n%s\nwant an error with %q", c.args, err, out, c.want)
		}
	}
}
