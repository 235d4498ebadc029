package testcluster

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRebuildWhereACopyIs: an object made on node b is read by a task on
// node a (a copy is pulled to a's store); b is killed, and the driver,
// the object's owner, reads it: the object is rebuilt from lineage on a,
// the only node left with the resource the task needs, where the pulled copy sits. The rebuilt
// task's result is that copy (a task run again whose result is already
// sealed on its node succeeds), not "object already exists", as it was in
// the chaos suite's lineage scenario; and the copy, now the object's
// primary on a, serves the next reader.
func TestRebuildWhereACopyIs(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/rebuild")
	c := Start(t, rayo, 1)
	// The task needs "spot", which the head lacks: its rebuild runs on a.
	a := c.AddNode(1, "--resources", `{"spot": 1}`)
	b := c.AddNode(1, "--resources", `{"spot": 1}`)
	dir := t.TempDir()
	d := start(t, c.Head, driver, dir, b.ID(), a.ID())
	if got := d.until(t, "copied", 60*time.Second); got != fmt.Sprintf("131072*7@%s", a.ID()) {
		t.Fatalf("the first read on %s: %q", a.ID(), got)
	}
	bID := b.ID()
	b.Kill()
	WaitFor(t, 30*time.Second, "node b DEAD", func() (bool, string) {
		nodes, err := c.ListNodes()
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, n := range nodes {
			if nodeName(n.NodeId) == bID && n.State == "DEAD" {
				return true, ""
			}
			seen = append(seen, nodeName(n.NodeId)+" "+n.State)
		}
		return false, strings.Join(seen, "\n")
	})
	fmt.Fprintln(d.stdin, "go")
	if got := d.until(t, "rebuilt", 60*time.Second); got != "131072*7" {
		t.Fatalf("the rebuilt object: %q", got)
	}
	if got := d.until(t, "read_again", 60*time.Second); got != fmt.Sprintf("131072*7@%s", a.ID()) {
		t.Fatalf("a read of the rebuilt object on %s: %q", a.ID(), got)
	}
	// The task ran twice: on b, then again on a, where the copy was.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var onB, onA int
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), bID+"-"):
			onB++
		case strings.HasPrefix(e.Name(), a.ID()+"-"):
			onA++
		}
	}
	if onB != 1 || onA != 1 {
		t.Fatalf("the task ran %d times on b and %d on a, want once on each (runs: %v)", onB, onA, entries)
	}
}
