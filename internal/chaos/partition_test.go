package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/testcluster"
)

// partitionChaos: on a cluster of its own, in network namespaces (a head
// and two nodes, each in its own), a node is cut off while tasks that
// prefer it run there. On its side it hears nothing from the control
// store for its --gcs-reconnect-timeout (4 s) and fences itself: its
// workers are killed and its daemon exits. On the other side the control
// store declares it dead, and its tasks are retried elsewhere. The cut
// lasts until it is fenced (15 s in the full suite). Every task's result
// is right, and no task ran on both sides without a retry counted: each
// task began no more often than the attempts the state API has for it,
// and none ended on the cut-off side.
func partitionChaos(t *testing.T, s *suite) row {
	if why := testcluster.NetnsMissing(); why != "" {
		record(row{scenario: "partition", faults: "skipped: " + why})
		t.Skip("the partition scenario cuts a node off by its network namespace: " + why)
	}
	n := size(8, 40)
	nw, c, victim := startPartitionCluster(t, s)
	victimID := victim.ID()

	dir := t.TempDir()
	d := startDriver(t, c.Head, s.driver, nil, "partition", dir, victimID, fmt.Sprint(n))
	d.until(t, "submitted", "", time.Minute)
	waitBegunOn(t, dir, victimID)
	held, fencedAfter := cutUntilFenced(t, nw, c, victim, victimID)

	kv := d.until(t, "round_done", "0", 3*time.Minute)
	d.finish(t)
	ok := atoi(t, kv, "ok")
	if ok != n {
		t.Errorf("%d of %d tasks right across the partition (wrong %s, failed %s, first error %s)", ok, n, kv["wrong"], kv["failed"], kv["first_err"])
	}
	tried := waitAttemptsCounted(t, c, n)
	uncounted, retried, onVictim := checkAttempts(t, dir, victimID, tried)
	if onVictim == 0 || retried == 0 {
		t.Errorf("%d runs on the cut-off node, %d tasks retried: want some of each", onVictim, retried)
	}
	t.Logf("%d tasks right; %s cut off %v, fenced itself %v after the cut; %d runs there, %d tasks retried, none uncounted",
		ok, victim.Name, held.Round(100*time.Millisecond), fencedAfter.Round(100*time.Millisecond), onVictim, retried)
	return row{
		faults: fmt.Sprintf("1 node cut off %v, fenced in %v (%d tasks retried)", held.Round(time.Second), fencedAfter.Round(100*time.Millisecond), retried),
		done:   ok,
		lost:   n - ok + uncounted,
	}
}

// startPartitionCluster starts a cluster of its own in three network
// namespaces: a head and two nodes; the last one, returned as the victim,
// fences itself after 4 s without the control store.
func startPartitionCluster(t *testing.T, s *suite) (*testcluster.Netns, *testcluster.Cluster, *testcluster.Node) {
	t.Helper()
	nw := testcluster.NewNetns(t, 3)
	c := testcluster.StartWrapped(t, s.rayo, nw.Wrap(0), nw.Addr(0), 1)
	c.AddNodeWrapped(nw.Wrap(1), nw.Addr(1), 2)
	victim := c.AddNodeWrapped(nw.Wrap(2), nw.Addr(2), 2, "--gcs-reconnect-timeout", "4s")
	return nw, c, victim
}

// waitBegunOn waits until a task has begun on the node to cut off.
func waitBegunOn(t *testing.T, dir, victimID string) {
	t.Helper()
	testcluster.WaitFor(t, 60*time.Second, "a task begun on the node to cut off", func() (bool, string) {
		for _, lines := range testcluster.Attempts(t, dir, "part-") {
			for _, l := range lines {
				if strings.HasPrefix(l, "begin "+victimID) {
					return true, ""
				}
			}
		}
		return false, fmt.Sprint(testcluster.Attempts(t, dir, "part-"))
	})
}

// cutUntilFenced cuts the victim (victimID) off, checks that it fences
// itself (its daemon exits non-zero, its workers go) and is DEAD on the
// other side, then heals the cut. It says how long the cut lasted and when
// the daemon exited.
func cutUntilFenced(t *testing.T, nw *testcluster.Netns, c *testcluster.Cluster, victim *testcluster.Node, victimID string) (held, fencedAfter time.Duration) {
	t.Helper()
	hold := 15 * time.Second // how long the cut lasts, at least, in the full suite
	nw.Cut(2)
	cut := time.Now()
	testcluster.WaitFor(t, 30*time.Second, "the cut-off node fenced on its side and DEAD on the other", func() (bool, string) {
		if ended, _ := victim.Exited(0); ended && fencedAfter == 0 {
			fencedAfter = time.Since(cut)
		}
		nodes, err := c.ListNodes()
		for _, info := range nodes {
			if id, err := ids.NodeIDFrom(info.NodeId); err == nil && id.Name() == victimID {
				return info.State == gcs.StateDead && fencedAfter > 0, fmt.Sprintf("state %s, daemon exited after %v", info.State, fencedAfter)
			}
		}
		return false, fmt.Sprint(err)
	})
	if _, err := victim.Exited(0); err == nil {
		t.Error("the fenced daemon exited 0")
	}
	testcluster.WaitFor(t, 10*time.Second, "the cut-off node's workers gone", func() (bool, string) {
		return len(victim.Group()) == 0, fmt.Sprint(victim.Group())
	})
	if full {
		if left := hold - time.Since(cut); left > 0 {
			// The partition lasts: the rest of the cluster goes on without
			// the node (no condition to wait for but the time the cut lasts).
			time.Sleep(left)
		}
	}
	held = time.Since(cut)
	nw.Heal(2)
	return held, fencedAfter
}

// waitAttemptsCounted waits until the state API has every one of the n
// tasks' end, and returns its attempts by task name.
func waitAttemptsCounted(t *testing.T, c *testcluster.Cluster, n int) map[string]int {
	t.Helper()
	var tried map[string]int
	testcluster.WaitFor(t, 30*time.Second, "every task's attempts in the state API", func() (bool, string) {
		var finished map[string]int
		tried, finished = attemptsByName(listTasks(t, c), "part-")
		return len(finished) == n, fmt.Sprintf("attempts %v, finished %v", tried, finished)
	})
	return tried
}

// checkAttempts checks each task's recorded runs against the state API's
// attempts (tried): none ended on the cut-off side, none began more often
// than counted. It returns the runs not counted, the tasks retried and the
// runs begun on the victim.
func checkAttempts(t *testing.T, dir, victimID string, tried map[string]int) (uncounted, retried, onVictim int) {
	t.Helper()
	for task, lines := range testcluster.Attempts(t, dir, "part-") {
		begun := 0
		for _, l := range lines {
			switch {
			case strings.HasPrefix(l, "begin "+victimID):
				onVictim++
				begun++
			case strings.HasPrefix(l, "begin "):
				begun++
			case strings.HasPrefix(l, "end "+victimID):
				uncounted++
				t.Errorf("%s ended on the cut-off side (%s): %v", task, victimID, lines)
			}
		}
		if begun > tried[task] {
			uncounted++
			t.Errorf("%s ran %d times, the state API counts %d attempts: %v", task, begun, tried[task], lines)
		}
		if tried[task] > 1 {
			retried++
		}
	}
	return uncounted, retried, onVictim
}

// attemptsByName counts, by task name, the attempts the state table has
// of the tasks named prefix*, and how many of them finished.
func attemptsByName(records []*pb.TaskRecord, prefix string) (tried, finished map[string]int) {
	seen := map[string]bool{}
	tried, finished = map[string]int{}, map[string]int{}
	for _, r := range records {
		name := r.Task.GetName()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		key := fmt.Sprintf("%x/%d", r.Task.GetTaskId(), r.Task.GetAttempt())
		if !seen[key] {
			seen[key] = true
			tried[name]++
		}
		if r.Task.GetState() == "FINISHED" {
			finished[name]++
		}
	}
	return tried, finished
}
