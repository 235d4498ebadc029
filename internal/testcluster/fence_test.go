package testcluster

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// begunOn waits until a task of the fence-work driver has begun on node.
func begunOn(t *testing.T, dir, node string) {
	t.Helper()
	WaitFor(t, 30*time.Second, "a task begun on "+node, func() (bool, string) {
		for _, lines := range Attempts(t, dir, "fence-") {
			for _, l := range lines {
				if strings.HasPrefix(l, "begin "+node) {
					return true, ""
				}
			}
		}
		return false, fmt.Sprint(Attempts(t, dir, "fence-"))
	})
}

// stateAttempts counts, by task name, the attempts the state API has of
// the tasks named prefix*, and how many of them finished.
func stateAttempts(t *testing.T, tasks func() list, prefix string) (tried, finished map[string]int) {
	t.Helper()
	l := tasks()
	seen := map[string]bool{}
	tried, finished = map[string]int{}, map[string]int{}
	for _, r := range l.Result {
		name, _ := r["name"].(string)
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		key := fmt.Sprint(r["task_id"], "/", r["attempt_number"])
		if !seen[key] {
			seen[key] = true
			tried[name]++
		}
		if r["state"] == "FINISHED" {
			finished[name]++
		}
	}
	return tried, finished
}

// checkNoUncountedRun checks that each task of the fence-work driver ran
// (began) no more often than the attempts the state API (read by tasks)
// counts for it, and that none ended on the fenced node: no task ran on
// both sides without a retry being counted. It returns how many tasks
// were retried.
func checkNoUncountedRun(t *testing.T, tasks func() list, dir, fenced string, n int) int {
	t.Helper()
	var tried map[string]int
	WaitFor(t, 15*time.Second, "every task's attempts in the state API", func() (bool, string) {
		var finished map[string]int
		tried, finished = stateAttempts(t, tasks, "fence-")
		return len(finished) == n, fmt.Sprintf("attempts %v, finished %v", tried, finished)
	})
	retried := 0
	for task, lines := range Attempts(t, dir, "fence-") {
		begun := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "begin ") {
				begun++
			}
			if strings.HasPrefix(l, "end "+fenced) {
				t.Errorf("%s ended on the fenced node %s: %v", task, fenced, lines)
			}
		}
		if begun > tried[task] {
			t.Errorf("%s ran %d times, the state API counts %d attempts: %v", task, begun, tried[task], lines)
		}
		if tried[task] > 1 {
			retried++
		}
		t.Logf("%s: %d attempt(s) counted, ran %v", task, tried[task], lines)
	}
	return retried
}

// TestPausedNodeFenced: a node paused (SIGSTOP, its daemon and workers)
// past the health timeout is declared dead and its tasks are retried
// elsewhere; once resumed it learns it was declared dead and stops at
// once: its workers are gone, the driver attached to it fails with
// ErrNodeFenced, and its daemon exits non-zero saying why. Its CPUs leave
// the totals. Started again, it joins as a new node.
func TestPausedNodeFenced(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := Start(t, rayo, 1)
	victim := c.AddNode(3)
	c.AddNode(2)
	victimID := victim.ID()
	api := c.Dashboard() + "/api/v0"

	// A driver on the victim, with a task in flight there...
	vdir := t.TempDir()
	vd := start(t, victim, driver, "fence-victim", vdir)
	vd.until(t, "ready", 30*time.Second)
	waitFile(t, vdir, "attempts--1")
	// ...and work from the head's driver, preferring the victim.
	dir := t.TempDir()
	const tasks = 3
	// Each runs 12 s: a victim's task paused 1 s in, for 6 s, would end
	// 5 s after SIGCONT unless its node stopped it.
	d := start(t, c.Head, driver, "fence-work", dir, victimID, fmt.Sprint(tasks), "12000")
	d.until(t, "submitted", 30*time.Second)
	begunOn(t, dir, victimID)
	workers := slices.DeleteFunc(victim.Group(), func(p int) bool { return p == victim.PID() })
	if len(workers) == 0 {
		t.Fatal("no worker processes on the victim")
	}

	pauseUntilDead(t, c, victim, victimID)
	resumeFenced(t, victim, victimID, workers)
	checkFencedDriver(t, vd, victimID)

	// The rest of the cluster finished the work, retrying what ran on
	// the victim, and nothing ran uncounted.
	nodes := d.until(t, "nodes", 60*time.Second)
	if nodes == "" || strings.Contains(nodes, victimID) {
		t.Fatalf("the work finished on %q; the victim was %s", nodes, victimID)
	}
	fromAPI := func() list {
		var l list
		getJSON(t, api+"/tasks?limit=10000", &l)
		return l
	}
	if retried := checkNoUncountedRun(t, fromAPI, dir, victimID, tasks); retried == 0 {
		t.Error("no task was retried, though some ran on the victim")
	}

	checkDeadCPUsGone(t, c, rayo, api, victimID)

	// A supervisor starting it again makes a new node.
	victim.Restart()
	if victim.ID() == victimID {
		t.Fatalf("the restarted node kept the fenced ID %s", victimID)
	}
}

// pauseUntilDead pauses the victim (SIGSTOP) and waits until the control
// store declares it dead.
func pauseUntilDead(t *testing.T, c *Cluster, victim *Node, victimID string) {
	t.Helper()
	victim.Signal(syscall.SIGSTOP)
	paused := time.Now()
	WaitFor(t, 15*time.Second, "the paused node declared dead", func() (bool, string) {
		nodes, err := c.ListNodes()
		for _, n := range nodes {
			if nodeName(n.NodeId) == victimID {
				return n.State == "DEAD", n.State
			}
		}
		return false, fmt.Sprint(err)
	})
	t.Logf("paused node declared DEAD %v after SIGSTOP", time.Since(paused).Round(time.Millisecond))
}

// resumeFenced resumes the victim (SIGCONT) and checks that its daemon
// exits soon, non-zero, saying why, and that its workers are gone.
func resumeFenced(t *testing.T, victim *Node, victimID string, workers []int) {
	t.Helper()
	victim.Signal(syscall.SIGCONT)
	resumed := time.Now()
	ended, exitErr := victim.Exited(10 * time.Second)
	if !ended {
		t.Fatalf("the fenced node's daemon still runs 10 s after SIGCONT:\n%s", victim.Output())
	}
	took := time.Since(resumed)
	t.Logf("daemon exited %v after SIGCONT: %v", took.Round(time.Millisecond), exitErr)
	if exitErr == nil {
		t.Errorf("the fenced daemon exited 0")
	}
	if took > 5*time.Second {
		t.Errorf("the fenced daemon took %v to exit, want under 5 s", took)
	}
	out := victim.Output()
	if !strings.Contains(out, "fenced") || !strings.Contains(out, "declared DEAD") || !strings.Contains(out, victimID) {
		t.Errorf("the daemon did not say why it stopped:\n%s", out)
	}
	WaitFor(t, 5*time.Second, "the victim's workers gone", func() (bool, string) {
		var live []int
		for _, p := range workers {
			if syscall.Kill(p, 0) == nil {
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil && !strings.Contains(string(b), ") Z ") {
					live = append(live, p)
				}
			}
		}
		return len(live) == 0, fmt.Sprint("still running: ", live)
	})
}

// checkFencedDriver checks that the driver attached to the victim was told
// it was fenced, and that a call after the fencing fails too.
func checkFencedDriver(t *testing.T, vd *interactive, victimID string) {
	t.Helper()
	if vd.until(t, "fenced", 30*time.Second) != "true" {
		t.Errorf("driver on the fenced node: not ErrNodeFenced")
	}
	if e := vd.until(t, "fenced_err", 10*time.Second); !strings.Contains(e, victimID) || !strings.Contains(e, "declared dead") ||
		!strings.Contains(e, "no heartbeat for 5s") {
		t.Errorf("driver on the fenced node: %s", e)
	}
	if vd.until(t, "after", 10*time.Second) != "true" {
		t.Errorf("a call after the fencing: %q", vd.kv["after_err"])
	}
	t.Logf("the victim's driver: %s", vd.kv["fenced_err"])
}

// checkDeadCPUsGone checks that the dead node's CPUs are in no total: not
// in rayo status, and not in the state API's record of the node.
func checkDeadCPUsGone(t *testing.T, c *Cluster, rayo, api, victimID string) {
	t.Helper()
	totals := regexp.MustCompile(`resources of the alive nodes \(used/total\): CPU [0-9.]+/3\b`)
	WaitFor(t, 10*time.Second, "rayo status counting the alive nodes' 3 CPUs", func() (bool, string) {
		st, err := c.Head.Command(rayo, "status").CombinedOutput()
		return err == nil && totals.Match(st), string(st)
	})
	var l list
	getJSON(t, api+"/nodes?limit=100", &l)
	for _, r := range l.Result {
		if r["node_id"] == victimID {
			if r["state"] != "DEAD" || len(r["resources_available"].(map[string]any)) != 0 {
				t.Errorf("the dead node in the state API: %v", r)
			}
		}
	}
}
