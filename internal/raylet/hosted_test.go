package raylet

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// TestDetachedActorWhoseOwnerDiedBeforeCreation: the owner of a detached
// actor registers its name and asks for its worker, then dies while the
// request waits (these workers never register): nobody will create the
// actor, so the raylet reports it DEAD (OWNER_DIED) and frees its name,
// which its job's end would not do for a detached actor. Its plain
// sibling's request goes quietly.
func TestDetachedActorWhoseOwnerDiedBeforeCreation(t *testing.T) {
	r, c := shellNode(t, "exec sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, plain := ids.NewTaskID(), ids.NewTaskID()
	desc := &pb.ActorName{Name: "early", Namespace: "ns", ActorId: id[:], Detached: true}
	reply := &pb.ActorNameReply{}
	if err := c.Call(ctx, rpc.MRegisterActorName, desc, reply); err != nil || reply.Error != "" {
		t.Fatalf("register the name: %v %s", err, reply.Error)
	}
	for _, req := range []*pb.RequestLease{
		{Dedicated: true, Detached: true, ActorId: id[:], Actor: desc},
		{Dedicated: true, ActorId: plain[:]},
	} {
		c.Go(rpc.MRequestLease, req, func([]byte, error) {})
	}
	deadline := time.Now().Add(10 * time.Second)
	for pendingCount(r) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the lease requests are not waiting")
		}
		time.Sleep(10 * time.Millisecond) // polling the raylet
	}
	_ = c.Close()

	var a *pb.ActorEvent
	for {
		if l := r.Table().Actors(&pb.StateQuery{Id: id[:]}); len(l.Actors) == 1 {
			a = l.Actors[0].Actor
		}
		if a != nil && a.State == tasktable.ActorDead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the detached actor whose owner died: %v", a)
		}
		time.Sleep(10 * time.Millisecond) // polling the raylet
	}
	if a.DeathCause != tasktable.CauseOwnerDied || !strings.Contains(a.DeathMessage, "died before it was created") {
		t.Errorf("the detached actor whose owner died: %s %q", a.DeathCause, a.DeathMessage)
	}
	if got, err := r.LookupActorName(ctx, "ns", "early"); err == nil {
		t.Errorf("its name still names %x", got.ActorId)
	}
	if l := r.Table().Actors(&pb.StateQuery{}); len(l.Actors) != 1 || !bytes.Equal(l.Actors[0].Actor.ActorId, id[:]) {
		t.Errorf("actors listed: %v", l.Actors)
	}
}

func pendingCount(r *Raylet) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
