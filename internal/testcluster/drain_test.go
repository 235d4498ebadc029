package testcluster

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// drainObjects are the task returns the drain tests make on the drained
// node: with its 64 MiB store, ten of 8 MiB spill some of them.
const drainObjects = 10

// drainCluster is a head, the node B that is drained (a 64 MiB store), and
// a node C that stays; the driver runs on the head and has made objects
// whose only copies are on B, and, with driverArgs DIR, has a task
// running on B until DIR/release exists.
func drainCluster(t *testing.T, driverArgs ...string) (c *Cluster, b, cn *Node, d *interactive, rayo string) {
	t.Helper()
	rayo = Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/drainobj")
	c = Start(t, rayo, 1)
	b = c.AddNode(1, "--object-store-memory", "64MiB")
	cn = c.AddNode(1)
	d = start(t, c.Head, driver, append([]string{b.ID(), cn.ID(), fmt.Sprint(drainObjects)}, driverArgs...)...)
	d.until(t, "ready", 90*time.Second)
	return c, b, cn, d, rayo
}

// spilledOn lists the spill files in n's state folder.
func spilledOn(n *Node) []string {
	var files []string
	_ = filepath.WalkDir(n.StateDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), "rayo-spill-") {
			files = append(files, path)
		}
		return nil
	})
	return files
}

// drainB drains b from the head with the rayo CLI, waiting until it is
// gone, and returns what the command printed; b's daemon must have
// exited 0.
func drainB(t *testing.T, c *Cluster, b *Node, rayo, deadline string) string {
	t.Helper()
	start := time.Now()
	out, err := c.Head.Command(rayo, "drain", b.ID(), "--deadline", deadline).CombinedOutput()
	if err != nil {
		t.Fatalf("rayo drain: %v\n%s", err, out)
	}
	t.Logf("rayo drain took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	ended, exit := b.Exited(30 * time.Second)
	if !ended || exit != nil {
		t.Fatalf("the drained node: ended %v, %v", ended, exit)
	}
	return string(out)
}

// TestDrainMovesObjects: the objects whose only copies are on a drained
// node (a MaxRetries(0) task's returns, some spilled on its disk, an
// actor method's return, neither of which could be made again, and the
// return of a task still running when the drain began) are moved to
// another node before it exits, and their owner told: read from a task on
// another node and from the driver once the node is gone, they have their
// values, and no task ran again (the state API counts one attempt each).
func TestDrainMovesObjects(t *testing.T) {
	dir := t.TempDir()
	c, b, _, d, rayo := drainCluster(t, dir)
	if len(spilledOn(b)) == 0 {
		t.Fatal("nothing spilled on B: its disk holds none of the objects")
	}
	start := time.Now()
	out, err := c.Head.Command(rayo, "drain", b.ID(), "--deadline", "2m", "--wait=false").CombinedOutput()
	if err != nil {
		t.Fatalf("rayo drain: %v\n%s", err, out)
	}
	// The task running there holds the node; the objects made before
	// move meanwhile (and are read from where they went at the end).
	if ended, _ := b.Exited(0); ended {
		t.Fatal("the drained node exited with its task still running")
	}
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if ended, exit := b.Exited(60 * time.Second); !ended || exit != nil {
		t.Fatalf("the drained node: ended %v, %v", ended, exit)
	}
	t.Logf("drained in %v", time.Since(start).Round(time.Millisecond))
	const all = drainObjects + 2
	var why string
	WaitFor(t, 10*time.Second, "the drained node DEAD", func() (bool, string) {
		nodes, err := c.ListNodes()
		for _, n := range nodes {
			if nodeName(n.NodeId) == b.ID() {
				why = n.DeathReason
				return n.State == "DEAD", n.State
			}
		}
		return false, fmt.Sprint(err)
	})
	t.Logf("death reason: %s", why)
	if want := fmt.Sprintf("%d object(s) (", all); !strings.Contains(why, want) || !strings.Contains(why, "moved to other nodes") || strings.Contains(why, "could not be moved") {
		t.Fatalf("the death reason does not say %d objects moved: %s", all, why)
	}
	fmt.Fprintln(d.stdin)
	d.until(t, "read_ms", 90*time.Second)
	if d.kv["mismatches"] != "0" || d.kv["lost"] != "0" || d.kv["read_on_c"] != strconv.Itoa(all) {
		t.Fatalf("after the drain: %v", d.kv)
	}
	t.Logf("%d objects read after the drain in %s ms", all, d.kv["read_ms"])
	api := c.Dashboard() + "/api/v0"
	fromAPI := func() list {
		var l list
		getJSON(t, api+"/tasks?limit=10000", &l)
		return l
	}
	WaitFor(t, 15*time.Second, "every task finished once in the state API", func() (bool, string) {
		tried, finished := stateAttempts(t, fromAPI, "drain-")
		ok := len(tried) == drainObjects+1
		for name, n := range tried {
			ok = ok && n == 1 && finished[name] == 1
		}
		return ok, fmt.Sprintf("attempts %v, finished %v", tried, finished)
	})
}

// TestDrainDeadlineTooShort: a drain whose deadline passes before the
// objects could move says so, naming how many were not moved; the node
// still exits at once, and reads of those objects fail with ErrObjectLost
// saying why, without hanging.
func TestDrainDeadlineTooShort(t *testing.T) {
	c, b, _, d, rayo := drainCluster(t)
	out := drainB(t, c, b, rayo, "1ms")
	want := fmt.Sprintf("%d object(s) could not be moved", drainObjects+1)
	if !strings.Contains(out, want) || !strings.Contains(out, "deadline passed") {
		t.Fatalf("rayo drain does not say %q:\n%s", want, out)
	}
	logs, _ := filepath.Glob(filepath.Join(b.StateDir, "s-*", "logs", "raylet.log"))
	var log []byte
	for _, f := range logs {
		x, _ := os.ReadFile(f)
		log = append(log, x...)
	}
	if n := strings.Count(string(log), "object not handed over"); n != drainObjects+1 {
		t.Errorf("the node's log (%v) names %d objects not handed over, want %d", logs, n, drainObjects+1)
	}
	start := time.Now()
	fmt.Fprintln(d.stdin)
	d.until(t, "read_ms", 60*time.Second)
	if d.kv["lost"] != strconv.Itoa(drainObjects+1) {
		t.Fatalf("after a drain that moved nothing: %v", d.kv)
	}
	for _, why := range []string{"no retries left", "actor results are not rebuilt"} {
		if !strings.Contains(d.kv["lost_errs"], why) {
			t.Errorf("the errors do not say %q: %s", why, d.kv["lost_errs"])
		}
	}
	t.Logf("the lost objects failed within %v", time.Since(start).Round(time.Millisecond))
}
