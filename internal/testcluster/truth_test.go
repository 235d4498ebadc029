package testcluster

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// actorsByName lists the control store's actors that have a name, by name,
// and the others by their ID.
func actorsByName(t *testing.T, c *Cluster) map[string]*pb.ActorEvent {
	t.Helper()
	l := &pb.StateList{}
	gcsCall(t, c, rpc.MListActors, &pb.StateQuery{}, l)
	out := make(map[string]*pb.ActorEvent, len(l.Actors))
	for _, a := range l.Actors {
		k := a.Actor.Name
		if k == "" {
			k = string(a.Actor.ActorId)
		}
		out[k] = a.Actor
	}
	return out
}

// waitActorsState polls the control store until ok holds for its actors,
// and returns how long that took.
func waitActorsState(t *testing.T, c *Cluster, within time.Duration, what string, ok func(map[string]*pb.ActorEvent) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := actorsByName(t, c)
		if ok(got) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v; actors %v", what, within, got)
		}
		time.Sleep(20 * time.Millisecond) // polling the control store
	}
}

// endedJob waits for a job that is over and not in seen, adds it to
// seen and returns it.
func endedJob(t *testing.T, c *Cluster, seen map[string]bool) *pb.JobInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := &pb.JobList{}
		gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, l)
		for _, j := range l.Jobs {
			if !seen[j.JobId] && gcs.JobOver(j.State) {
				seen[j.JobId] = true
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new ended job within 10s: %v", l.Jobs)
		}
		time.Sleep(20 * time.Millisecond) // polling the control store
	}
}

// deadOf says whether the actors of tag's driver (plain and named) are
// DEAD with cause, and its detached one ALIVE.
func deadOf(tag, cause string) func(map[string]*pb.ActorEvent) bool {
	return func(m map[string]*pb.ActorEvent) bool {
		named, keeper := m[tag+"-named"], m[tag+"-keeper"]
		if named == nil || keeper == nil || named.State != tasktable.ActorDead || named.DeathCause != cause || keeper.State != tasktable.ActorAlive {
			return false
		}
		plain := 0
		for _, a := range m {
			if a.Name == "" && a.JobId == named.JobId && a.State == tasktable.ActorDead && a.DeathCause == cause {
				plain++
			}
		}
		return plain == 1
	}
}

// TestActorsAndJobsEndTruthfully: a driver that returns through Shutdown
// leaves its job SUCCEEDED and its actors DEAD (JOB_FINISHED); a
// SIGKILLed one leaves its job FAILED, saying the driver died, and its
// actors DEAD (OWNER_DIED); detached actors live on, and are listed, with
// the named dead ones, after the control store is SIGKILLed and restarts
// on Redis.
func TestActorsAndJobsEndTruthfully(t *testing.T) {
	redis := redistest.Start(t)
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/truth")
	c := Start(t, rayo, 2, "--redis-address", redis)
	seen := map[string]bool{}

	run(t, c.Head, driver, "actors", "clean")
	took := waitActorsState(t, c, 5*time.Second, "a clean driver's actors", deadOf("clean", tasktable.CauseJobFinished))
	t.Logf("a driver that called Shutdown: its actors DEAD (JOB_FINISHED) %v after it exited", took.Round(time.Millisecond))
	if j := endedJob(t, c, seen); j.State != gcs.JobSucceeded || j.Message != "" {
		t.Errorf("the clean driver's job: %s %q", j.State, j.Message)
	}

	d := start(t, c.Head, driver, "hang", "killed")
	d.until(t, "ready", 30*time.Second)
	// Killed at once: the control store knows the named actors from their
	// registration, not from the driver's batched events.
	pid := d.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = d.cmd.Wait()
	waitActorsState(t, c, 5*time.Second, "a SIGKILLed driver's actors", deadOf("killed", tasktable.CauseOwnerDied))
	t.Logf("a SIGKILLed driver: its actors DEAD (OWNER_DIED) %v after the kill", time.Since(killed).Round(time.Millisecond))
	j := endedJob(t, c, seen)
	if j.State != gcs.JobFailed || !strings.Contains(j.Message, "the driver died") || !strings.Contains(j.Message, "pid "+strconv.Itoa(pid)) {
		t.Errorf("the SIGKILLed driver's job: %s %q, want FAILED saying the driver (pid %d) died", j.State, j.Message, pid)
	}
	if a := actorsByName(t, c)["killed-named"]; !strings.Contains(a.DeathMessage, "pid "+strconv.Itoa(pid)) {
		t.Errorf("the SIGKILLed driver's actor: %q does not name its owner's pid", a.DeathMessage)
	}

	// The metrics count the dead as DEAD, and only the detached as ALIVE.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(c.Dashboard() + "/metrics")
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if strings.Contains(string(body), `rayo_actors{state="DEAD"} 4`+"\n") && strings.Contains(string(body), `rayo_actors{state="ALIVE"} 2`+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: want 4 DEAD and 2 ALIVE actors (%v):\n%s", err, grepLines(string(body), "rayo_actors"))
		}
		time.Sleep(50 * time.Millisecond) // polling the head
	}

	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	killGCS(t, c, aliveIDs(nodes))
	got := actorsByName(t, c)
	for name, want := range map[string]string{"clean-keeper": tasktable.ActorAlive, "killed-keeper": tasktable.ActorAlive,
		"clean-named": tasktable.ActorDead, "killed-named": tasktable.ActorDead} {
		if a := got[name]; a == nil || a.State != want {
			t.Errorf("after the control store's restart, %s: %v, want %s", name, a, want)
		}
	}
	if a := got["killed-named"]; a != nil && a.DeathCause != tasktable.CauseOwnerDied {
		t.Errorf("after the control store's restart, killed-named died of %q", a.DeathCause)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestNodeDeathKillsItsActors: an actor that may not restart, on a node
// that is SIGKILLed, is DEAD with NODE_DIED, its driver alive.
func TestNodeDeathKillsItsActors(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/truth")
	c := Start(t, rayo, 1)
	other := c.AddNode(1)
	d := start(t, c.Head, driver, "pinned", other.ID(), "lost")
	d.until(t, "ready", 30*time.Second)
	if at := d.kv["at"]; !strings.HasPrefix(at, other.ID()+"/") {
		t.Fatalf("the pinned actor runs at %q, not on node %s", at, other.ID())
	}
	other.Kill()
	killed := time.Now()
	waitActorsState(t, c, 10*time.Second, "the dead node's actor", func(m map[string]*pb.ActorEvent) bool {
		a := m["lost-pinned"]
		return a != nil && a.State == tasktable.ActorDead && a.DeathCause == tasktable.CauseNodeDied
	})
	t.Logf("a SIGKILLed node: its actor DEAD (NODE_DIED) %v after the kill", time.Since(killed).Round(time.Millisecond))
	if a := actorsByName(t, c)["lost-pinned"]; !strings.Contains(a.DeathMessage, "its node "+other.ID()+" died") {
		t.Errorf("the dead node's actor: %q", a.DeathMessage)
	}
}
