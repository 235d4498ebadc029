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

// TestHostedActorsReported: the actors a node's workers host, as a node
// tells a (restarted) control store when it registers: PENDING_CREATION
// until the worker's ALIVE event passes through the raylet, then ALIVE,
// a detached one with its worker's address; one whose owner described it
// wrong (detached without a name) is left out rather than have the
// node's registration refused.
func TestHostedActorsReported(t *testing.T) {
	r, _ := shellNode(t, "exec sleep 60")
	keeper, bad := ids.NewTaskID(), ids.NewTaskID()
	w := &workerProc{id: ids.NewWorkerID(), pid: 4242, addr: "tcp:127.0.0.1:9"}
	r.mu.Lock()
	r.leases[1001] = &leaseRec{id: 1001, w: w, dedicated: true, detached: true, actorID: keeper[:], granted: time.Now(),
		actor: &pb.ActorName{Name: "keeper", Namespace: "ns", ActorId: keeper[:], Detached: true, JobId: "j1", ClassName: "Box", Class: "main.Box"}}
	r.leases[1002] = &leaseRec{id: 1002, w: &workerProc{id: ids.NewWorkerID(), pid: 4243}, dedicated: true, detached: true, actorID: bad[:],
		granted: time.Now(), actor: &pb.ActorName{ActorId: bad[:], Detached: true}}
	r.mu.Unlock()
	t.Cleanup(func() {
		r.mu.Lock()
		delete(r.leases, 1001)
		delete(r.leases, 1002)
		r.mu.Unlock()
	})

	check := func(state, workerAddr string) {
		t.Helper()
		got := r.HostedActors()
		if len(got) != 1 {
			t.Fatalf("hosted actors: %v, want the keeper only", got)
		}
		h := got[0]
		if !bytes.Equal(h.Actor.ActorId, keeper[:]) || h.Actor.Name != "keeper" || h.Actor.Class != "main.Box" || h.Actor.WorkerAddr != workerAddr ||
			h.State.State != state || h.State.Pid != 4242 || h.State.NodeId != r.NodeName() || h.State.JobId != "j1" {
			t.Fatalf("hosted keeper: %v, want %s at %q", h, state, workerAddr)
		}
	}
	check(tasktable.ActorPending, "")
	// Another worker's event for the same actor ID does not count.
	r.ReportEvents(&pb.StateEvents{Actors: []*pb.ActorEvent{{ActorId: keeper[:], State: tasktable.ActorAlive, TimeUnixNs: 5, WorkerId: []byte("other")}}})
	check(tasktable.ActorPending, "")
	r.ReportEvents(&pb.StateEvents{Actors: []*pb.ActorEvent{{ActorId: keeper[:], State: tasktable.ActorAlive, TimeUnixNs: 7, WorkerId: w.id[:]}}})
	check(tasktable.ActorAlive, "tcp:127.0.0.1:9")
	if ts := r.HostedActors()[0].State.TimeUnixNs; ts != 7 {
		t.Errorf("ALIVE since %d, want the worker's 7", ts)
	}
}
