package testcluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// quietDriver starts the truth driver on n with its own state events
// off (RAYO_TASK_EVENTS=0): the control store hears nothing from it as an
// owner, as from a driver killed before its first batch went out. Its
// actors' workers report their own events as ever.
func quietDriver(t *testing.T, n *Node, driver string, args ...string) *interactive {
	t.Helper()
	cmd := n.Command(driver, args...)
	cmd.Env = append(cmd.Env, tasktable.EnvTaskEventsEnable+"=0")
	return startCmd(t, cmd)
}

// listedActor is the actor named name as `rayo list actors` on the head
// shows it.
func listedActor(t *testing.T, c *Cluster, rayo, name string) map[string]any {
	t.Helper()
	out, err := c.Head.Command(rayo, "list", "actors", "--filter", "name="+name, "--json").CombinedOutput()
	var l list
	if err != nil || json.Unmarshal(out, &l) != nil || len(l.Result) != 1 {
		t.Fatalf("rayo list actors --filter name=%s: %v\n%s", name, err, out)
	}
	return l.Result[0]
}

// where is the node/pid of a listed actor, as the truth driver prints it.
func where(a *pb.ActorEvent) string { return fmt.Sprintf("%s/%d", a.NodeId, a.Pid) }

// TestDetachedActorOutlivesItsKilledDriver: a driver that makes a
// detached named actor and is SIGKILLed at once, before any of its own
// events reached the control store (it sends none), leaves the actor
// ALIVE: the name's registration told the control store it is detached.
// A second driver finds it by name and calls it, and `rayo list actors`
// shows it ALIVE; the driver's named actor is DEAD (OWNER_DIED).
func TestDetachedActorOutlivesItsKilledDriver(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/truth")
	c := Start(t, rayo, 2)
	seen := map[string]bool{}

	d := quietDriver(t, c.Head, driver, "hang", "quick")
	d.until(t, "ready", 30*time.Second)
	keeperAt := d.kv["at"] // the last actor called: the detached one
	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = d.cmd.Wait()
	if j := endedJob(t, c, seen); j.State != gcs.JobFailed {
		t.Fatalf("the SIGKILLed driver's job: %s %q", j.State, j.Message)
	}
	waitActorsState(t, c, 10*time.Second, "the SIGKILLed driver's actors", deadOf("quick", tasktable.CauseOwnerDied))
	t.Logf("a driver SIGKILLed without reporting an event: its named actor DEAD (OWNER_DIED), its detached one ALIVE, %v after the kill",
		time.Since(killed).Round(time.Millisecond))
	if k := actorsByName(t, c)["quick-keeper"]; where(k) != keeperAt || !k.Detached || k.DeathCause != "" {
		t.Fatalf("the detached actor: %v, want ALIVE at %s", k, keeperAt)
	}

	if got := run(t, c.Head, driver, "call", "quick-keeper")["at"]; got != keeperAt {
		t.Fatalf("a second driver reached the detached actor at %q, want %q", got, keeperAt)
	}
	if a := listedActor(t, c, rayo, "quick-keeper"); a["state"] != tasktable.ActorAlive || a["detached"] != true {
		t.Fatalf("rayo list actors: %v, want the detached actor ALIVE", a)
	}
}

// TestNamedActorsAfterInMemoryRestart: a control store without Redis
// forgets its actors when its process is SIGKILLed, but the nodes tell
// the new one, as they register again, of the actors their workers host:
// a named and a detached named actor on a worker node are listed ALIVE
// again, where they ran, and a new driver reaches both by name. When the
// named actor's driver is then SIGKILLed, the new control store, which
// never heard of its job, still marks it DEAD (OWNER_DIED), and the
// detached one lives on.
func TestNamedActorsAfterInMemoryRestart(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/truth")
	c := Start(t, rayo, 1)
	other := c.AddNode(1)
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	want := aliveIDs(nodes)

	// The driver reports no events: what the control store lists of its
	// actors comes from their workers, through the node that hosts them.
	d := quietDriver(t, c.Head, driver, "keep", other.ID(), "mem")
	d.until(t, "ready", 30*time.Second)
	var before map[string]*pb.ActorEvent
	waitActorsState(t, c, 10*time.Second, "both actors ALIVE on the worker node", func(m map[string]*pb.ActorEvent) bool {
		before = m
		for _, n := range []string{"mem-named", "mem-keeper"} {
			if a := m[n]; a == nil || a.State != tasktable.ActorAlive || a.Pid == 0 || a.NodeId != other.ID() {
				return false
			}
		}
		return true
	})

	fig := killGCS(t, c, want)
	t.Logf("in-memory control store SIGKILLed: answering again after %v, both nodes registered again after %v",
		fig.answers.Round(time.Millisecond), fig.registered.Round(time.Millisecond))
	after := actorsByName(t, c)
	for _, n := range []string{"mem-named", "mem-keeper"} {
		a, b := after[n], before[n]
		if a == nil || a.State != tasktable.ActorAlive || where(a) != where(b) || a.Namespace != b.Namespace || a.JobId != b.JobId ||
			a.ClassName != b.ClassName || a.Detached != b.Detached {
			t.Fatalf("after the restart, %s: %v, want as before: %v", n, a, b)
		}
	}
	for _, n := range []string{"mem-named", "mem-keeper"} {
		if got := run(t, c.Head, driver, "call", n)["at"]; got != where(before[n]) {
			t.Fatalf("a new driver reached %s at %q, want %q", n, got, where(before[n]))
		}
	}
	if a := listedActor(t, c, rayo, "mem-keeper"); a["state"] != tasktable.ActorAlive || fmt.Sprint(a["pid"]) != fmt.Sprint(before["mem-keeper"].Pid) {
		t.Fatalf("rayo list actors after the restart: %v, want the detached actor ALIVE, pid %d", a, before["mem-keeper"].Pid)
	}

	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Wait()
	waitActorsState(t, c, 10*time.Second, "the named actor of the SIGKILLed driver DEAD, the detached one ALIVE", func(m map[string]*pb.ActorEvent) bool {
		n, k := m["mem-named"], m["mem-keeper"]
		return n != nil && n.State == tasktable.ActorDead && n.DeathCause == tasktable.CauseOwnerDied &&
			k != nil && k.State == tasktable.ActorAlive && strings.Contains(n.DeathMessage, "died")
	})
}
