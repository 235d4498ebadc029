package testcluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPartitionedNodeFenced cuts a node off by its network namespace for
// longer than the health timeout, with work running on it and a driver
// attached to it. The node, hearing nothing from the control store for
// its --gcs-reconnect-timeout (4 s, under the 5 s health timeout), stops
// on its side of the partition: its workers are killed, its driver fails
// with ErrNodeFenced, its daemon exits non-zero. The control store
// declares it dead on the other side, and its tasks are retried there.
// Every run of a task is an attempt the state API counts, and no task
// ends on the cut-off side: nothing ran on both sides uncounted.
func TestPartitionedNodeFenced(t *testing.T) {
	nw := newNetns(t, 3)
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := StartWrapped(t, rayo, nw.wrap(0), nw.addr[0], 1)
	c.AddNodeWrapped(nw.wrap(1), nw.addr[1], 2)
	victim := c.AddNodeWrapped(nw.wrap(2), nw.addr[2], 3, "--gcs-reconnect-timeout", "4s")
	victimID := victim.ID()

	vdir := t.TempDir()
	vd := start(t, victim, driver, "fence-victim", vdir)
	vd.until(t, "ready", 30*time.Second)
	waitFile(t, vdir, "attempts--1")
	dir := t.TempDir()
	const tasks = 3
	d := start(t, c.Head, driver, "fence-work", dir, victimID, fmt.Sprint(tasks), "12000")
	d.until(t, "submitted", 30*time.Second)
	begunOn(t, dir, victimID)

	nw.cut(2)
	cut := time.Now()
	var exitedAfter time.Duration
	WaitFor(t, 20*time.Second, "the cut-off node declared dead, and stopped on its side", func() (bool, string) {
		if ended, _ := victim.Exited(0); ended && exitedAfter == 0 {
			exitedAfter = time.Since(cut)
		}
		nodes, err := c.ListNodes()
		for _, n := range nodes {
			if nodeName(n.NodeId) == victimID {
				return n.State == "DEAD" && exitedAfter > 0, fmt.Sprintf("state %s, daemon exited after %v", n.State, exitedAfter)
			}
		}
		return false, fmt.Sprint(err)
	})
	t.Logf("the cut-off node stopped itself %v after the cut; declared DEAD by %v", exitedAfter.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
	if exitedAfter > 10*time.Second {
		t.Errorf("the cut-off node stopped %v after the cut, want within its 4 s reconnect timeout and a heartbeat", exitedAfter)
	}
	_, exitErr := victim.Exited(0)
	if exitErr == nil {
		t.Error("the fenced daemon exited 0")
	}
	if out := victim.Output(); !strings.Contains(out, "no answer from the control store") || !strings.Contains(out, "--gcs-reconnect-timeout") {
		t.Errorf("the daemon did not say why it stopped:\n%s", out)
	}
	if left := victim.Group(); len(left) != 0 {
		WaitFor(t, 5*time.Second, "the cut-off node's workers gone", func() (bool, string) {
			return len(victim.Group()) == 0, fmt.Sprint(victim.Group())
		})
	}
	if vd.until(t, "fenced", 30*time.Second) != "true" {
		t.Errorf("driver on the cut-off node: %s", vd.until(t, "fenced_err", 10*time.Second))
	}
	if e := vd.until(t, "fenced_err", 10*time.Second); !strings.Contains(e, victimID) || !strings.Contains(e, "no answer from the control store") {
		t.Errorf("driver on the cut-off node: %s", e)
	}

	nw.heal(2)
	nodes := d.until(t, "nodes", 60*time.Second)
	if nodes == "" || strings.Contains(nodes, victimID) {
		t.Fatalf("the work finished on %q; the cut-off node was %s", nodes, victimID)
	}
	t.Logf("the work finished on %s, %v after the cut", nodes, time.Since(cut).Round(time.Millisecond))
	// The head's API server listens on its namespace's loopback: ask it
	// through the CLI there.
	fromCLI := func() list {
		out, err := c.Head.Command(rayo, "list", "tasks", "--json", "--limit", "10000").Output()
		if err != nil {
			t.Fatalf("rayo list tasks: %v\n%s", err, out)
		}
		var l list
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatalf("rayo list tasks --json: %v\n%s", err, out)
		}
		return l
	}
	if retried := checkNoUncountedRun(t, fromCLI, dir, victimID, tasks); retried == 0 {
		t.Error("no task was retried, though some ran on the cut-off node")
	}
}
