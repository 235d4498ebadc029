package rayo

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// TestActorDeathCauses: an actor's owner says why it died, in the state
// table: rayo.Kill (KILLED), a process that died with no restart left
// (OUT_OF_RESTARTS, here after one restart) and a failing constructor
// (CREATION_FAILED).
func TestActorDeathCauses(t *testing.T) {
	ctx := ctxT(t)
	c := stateConn(t)
	deadAs := func(name string) *pb.ActorEvent {
		t.Helper()
		return waitRecord(t, c, rpc.MListActors, actorsOf, func(r *pb.ActorRecord) bool {
			return r.Actor.Name == name && r.Actor.State == "DEAD"
		}).Actor
	}

	killed := newCounter.Options(Name("cause-killed"), Namespace("causes")).Remote()
	if _, err := Get(ctx, incr.Remote(killed)); err != nil {
		t.Fatal(err)
	}
	if err := Kill(ctx, killed); err != nil {
		t.Fatal(err)
	}
	if a := deadAs("cause-killed"); a.DeathCause != "KILLED" || a.DeathMessage != "actor was killed by rayo.Kill" {
		t.Errorf("killed actor: %s %q", a.DeathCause, a.DeathMessage)
	}

	spent := newCounter.Options(Name("cause-spent"), Namespace("causes"), MaxRestarts(1)).Remote()
	for range 2 { // the process exits; restarted once, then no more
		if _, err := Get(ctx, exitM.Remote(spent)); err == nil {
			t.Fatal("a call whose process exits succeeded")
		}
	}
	if a := deadAs("cause-spent"); a.DeathCause != "OUT_OF_RESTARTS" || a.NumRestarts != 1 || a.MaxRestarts != 1 ||
		!strings.Contains(a.DeathMessage, "may not restart (restarted 1 times, MaxRestarts 1)") {
		t.Errorf("actor out of restarts: %s %q, %d restarts of %d", a.DeathCause, a.DeathMessage, a.NumRestarts, a.MaxRestarts)
	}

	bad := badCounter.Options(Name("cause-bad"), Namespace("causes")).Remote()
	if _, err := Get(ctx, incr.Remote(bad)); err == nil {
		t.Fatal("a call on an actor whose constructor failed succeeded")
	}
	if a := deadAs("cause-bad"); a.DeathCause != "CREATION_FAILED" || !strings.Contains(a.DeathMessage, "no counter today") {
		t.Errorf("actor whose constructor failed: %s %q", a.DeathCause, a.DeathMessage)
	}
}

// Parent is an actor that owns another.
type Parent struct{ child Actor[*Counter] }

var (
	newParent = Actor0(func() *Parent { return &Parent{} })
	// spawnChild makes a named counter the parent owns, and calls it once.
	spawnChild = Method1(newParent, func(p *Parent, name string) int {
		p.child = newCounter.Options(Name(name), Namespace("causes")).Remote()
		v, err := Get(context.Background(), incr.Remote(p.child))
		if err != nil {
			panic(err)
		}
		return v
	})
	parentExit = Method0(newParent, func(*Parent) int { os.Exit(1); return 0 })
)

// TestActorDiesWithItsOwner: an actor whose owner (here another actor's
// process) dies is DEAD with OWNER_DIED, naming the owner's pid; the node
// reports it, not the dead owner.
func TestActorDiesWithItsOwner(t *testing.T) {
	ctx := ctxT(t)
	c := stateConn(t)
	p := newParent.Remote()
	if v, err := Get(ctx, spawnChild.Remote(p, V("orphan"))); err != nil || v != 1 {
		t.Fatalf("spawn a child actor: %v %v", v, err)
	}
	waitRecord(t, c, rpc.MListActors, actorsOf, func(r *pb.ActorRecord) bool {
		return r.Actor.Name == "orphan" && r.Actor.State == "ALIVE"
	})
	if _, err := Get(ctx, parentExit.Remote(p)); err == nil {
		t.Fatal("a call whose process exits succeeded")
	}
	a := waitRecord(t, c, rpc.MListActors, actorsOf, func(r *pb.ActorRecord) bool {
		return r.Actor.Name == "orphan" && r.Actor.State == "DEAD"
	}).Actor
	if a.DeathCause != "OWNER_DIED" || !strings.HasPrefix(a.DeathMessage, "its owner (pid ") || !strings.HasSuffix(a.DeathMessage, ") died") {
		t.Errorf("actor whose owner died: %s %q", a.DeathCause, a.DeathMessage)
	}
}
