package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// drainStatus is what the drain test reads of `rayo status --json`.
type drainStatus struct {
	Nodes []struct {
		NodeID      string `json:"node_id"`
		State       string `json:"state"`
		DeathReason string `json:"death_reason"`
		Head        bool   `json:"head"`
	} `json:"nodes"`
}

func (e clusterEnv) drainStatus(t *testing.T) drainStatus {
	t.Helper()
	var st drainStatus
	out, err := e.cmd("status", "--json").Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	return st
}

// poll waits, within d, for cond.
func poll(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) { // polling other processes
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

// TestDrainNodeWithRunningTask drains a node while a task runs there: the
// node takes no new work and shows DRAINING, the task finishes once, with
// its right result, the node's daemon exits 0, and the node is listed DEAD
// as drained. Draining it again, the head, or an unknown node is refused.
func TestDrainNodeWithRunningTask(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	driverBin := filepath.Join(t.TempDir(), "drain")
	if out, err := exec.Command("go", "build", "-o", driverBin, "./testdata/drain").CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	addr := e.head(t, 1)
	victim := e.daemon(t, "start", "--address", addr, "--num-cpus", "1", "--resources", `{"drainme": 1}`)
	exited := make(chan error, 1)
	go func() { exited <- victim.Wait() }()
	e.waitFor(t, 20*time.Second, "two nodes alive", func(st status) bool { return count(st, "ALIVE") == 2 })
	victimID, headID := e.drainNodeIDs(t)

	// Bad input first: unknown node, the head.
	checkDrainRefusesBadInput(t, e, headID)

	dir := t.TempDir()
	d := startDrainDriver(t, e, driverBin, addr, dir)
	poll(t, 30*time.Second, "the task starts on the node", func() bool { return drainAttempts(dir) == 1 })

	checkNodeDraining(t, e, victimID)
	// The running task holds the node: it is still there.
	select {
	case err := <-exited:
		t.Fatalf("the node exited with its task still running: %v", err)
	default:
	}
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d.wait(t)
	if n := drainAttempts(dir); n != 1 {
		t.Fatalf("the task ran %d times, want once", n)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the drained node's daemon: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the drained node did not exit")
	}
	var s, why string
	poll(t, 10*time.Second, "the drained node listed DEAD", func() bool { s, why = e.drainNodeState(t, victimID); return s == "DEAD" })
	if !strings.Contains(why, "drained") {
		t.Fatalf("death reason %q does not say it was drained", why)
	}
	out, err := e.cmd("drain", victimID, "--wait=false").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "dead") {
		t.Fatalf("draining a dead node: want refused, got %v: %s", err, out)
	}
}

// drainNodeIDs returns the IDs of the one worker node and of the head.
func (e clusterEnv) drainNodeIDs(t *testing.T) (victimID, headID string) {
	t.Helper()
	for _, n := range e.drainStatus(t).Nodes {
		if n.Head {
			headID = n.NodeID
		} else {
			victimID = n.NodeID
		}
	}
	return victimID, headID
}

// drainNodeState is the state and death reason of node id, or "" and ""
// if rayo status does not list it.
func (e clusterEnv) drainNodeState(t *testing.T, id string) (string, string) {
	t.Helper()
	for _, n := range e.drainStatus(t).Nodes {
		if n.NodeID == id {
			return n.State, n.DeathReason
		}
	}
	return "", ""
}

// checkDrainRefusesBadInput checks that draining an unknown node, a bad
// ID or the head is refused with a clear message.
func checkDrainRefusesBadInput(t *testing.T, e clusterEnv, headID string) {
	t.Helper()
	for _, bad := range []struct{ id, want string }{
		{"ffffffffffff", "no node's ID starts with"},
		{"zz", "not a hexadecimal node ID"},
		{headID[:8], "draining the head node is not supported"},
	} {
		out, err := e.cmd("drain", bad.id, "--wait=false").CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.want) {
			t.Fatalf("drain %s: want an error with %q, got %v: %s", bad.id, bad.want, err, out)
		}
	}
}

// checkNodeDraining drains node victimID and checks that it shows
// DRAINING and that draining it again is refused.
func checkNodeDraining(t *testing.T, e clusterEnv, victimID string) {
	t.Helper()
	out, err := e.cmd("drain", victimID[:8], "--deadline", "1m", "--wait=false").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "draining node "+victimID) {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	if s, _ := e.drainNodeState(t, victimID); s != "DRAINING" {
		t.Fatalf("after drain, the node is %s, want DRAINING", s)
	}
	out, err = e.cmd("drain", victimID, "--wait=false").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already draining") {
		t.Fatalf("draining twice: want refused, got %v: %s", err, out)
	}
}

// drainDriver is the drain test's driver program, running.
type drainDriver struct {
	done chan struct{} // closed once the driver has exited
	err  error         // its exit, set before done is closed
	out  bytes.Buffer  // its output
}

// startDrainDriver starts the driver at driverBin on the cluster at addr,
// with dir for its files. It is killed when the test ends.
func startDrainDriver(t *testing.T, e clusterEnv, driverBin, addr, dir string) *drainDriver {
	t.Helper()
	d := &drainDriver{done: make(chan struct{})}
	driver := exec.Command(driverBin, dir)
	driver.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS="+addr, "RAYO_TOKEN=")
	driver.Stdout, driver.Stderr = &d.out, &d.out
	if err := driver.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = driver.Wait(); close(d.done) }()
	t.Cleanup(func() { _ = driver.Process.Kill(); <-d.done })
	return d
}

// wait waits up to 60s for the driver to end, and checks that it
// succeeded with the right results.
func (d *drainDriver) wait(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("driver: %v\n%s", d.err, d.out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("driver did not end:\n%s", d.out.String())
	}
	if got := d.out.String(); !strings.Contains(got, "hold 7") || !strings.Contains(got, "double 42") {
		t.Fatalf("driver said %q", got)
	}
}

// drainAttempts counts the attempts of the task the driver recorded in dir.
func drainAttempts(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "attempts"))
	return strings.Count(string(b), "\n")
}
