package gcs

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

func actorID(b byte) []byte { return bytes.Repeat([]byte{b}, ids.TaskIDLen) }

func registerName(t *testing.T, c *rpc.Conn, a *pb.ActorName) {
	t.Helper()
	r := &pb.ActorNameReply{}
	call(t, c, rpc.MRegisterActorName, a, r)
	if r.Error != "" {
		t.Fatalf("register %q: %s", a.Name, r.Error)
	}
}

// TestRegistrationSparesDetachedActor: the name registration (made before
// the actor runs) tells the control store the actor is detached: its
// driver SIGKILLed before any batch of its events came, the job's end
// kills the named actor of the job (OWNER_DIED) but not the detached one,
// which its worker's later ALIVE event shows alive; both are listed with
// their name, namespace, class and job from the registration on.
func TestRegistrationSparesDetachedActor(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	startJob(t, c, "j1", "")
	keeper := &pb.ActorName{Name: "keeper", Namespace: "ns", ActorId: actorID(1), OwnerAddr: "tcp:127.0.0.1:1", Class: "*main.Box",
		Detached: true, JobId: "j1", ClassName: "Box", MaxRestarts: 2}
	named := &pb.ActorName{Name: "named", Namespace: "ns", ActorId: actorID(2), OwnerAddr: "tcp:127.0.0.1:1", JobId: "j1", ClassName: "Box"}
	registerName(t, c, keeper)
	registerName(t, c, named)

	got := waitActors(t, c, "the registered actors listed", func(m map[string]*pb.ActorEvent) bool { return len(m) == 2 })
	k := got[string(actorID(1))]
	if k == nil || k.State != tasktable.ActorPending || !k.Detached || k.Name != "keeper" || k.Namespace != "ns" || k.ClassName != "Box" ||
		k.JobId != "j1" || k.MaxRestarts != 2 {
		t.Fatalf("the detached actor at registration: %v", k)
	}

	if err := c.Notify(rpc.MJobEnded, &pb.JobRequest{JobId: "j1", Status: JobFailed, Message: "the driver died"}); err != nil {
		t.Fatal(err)
	}
	// The worker's own events come after the job's end, without the
	// detached flag (only the owner's carry it).
	for _, id := range [][]byte{actorID(1), actorID(2)} {
		if err := c.Notify(rpc.MReportEvents, &pb.StateEvents{Actors: []*pb.ActorEvent{{ActorId: id, State: tasktable.ActorAlive,
			TimeUnixNs: time.Now().UnixNano(), JobId: "j1", NodeId: "n1", Pid: 7}}}); err != nil {
			t.Fatal(err)
		}
	}
	got = waitActors(t, c, "the named actor dead", func(m map[string]*pb.ActorEvent) bool {
		return m[string(actorID(2))].State == tasktable.ActorDead && m[string(actorID(1))].Pid == 7
	})
	if a := got[string(actorID(2))]; a.DeathCause != tasktable.CauseOwnerDied {
		t.Errorf("the named actor of the killed driver: %s %q", a.DeathCause, a.DeathMessage)
	}
	if a := got[string(actorID(1))]; a.State != tasktable.ActorAlive || a.DeathCause != "" {
		t.Errorf("the detached actor after its driver's death: %s %s %q", a.State, a.DeathCause, a.DeathMessage)
	}
}

// hosted describes an actor a node hosts, ALIVE since at.
func hosted(id []byte, name string, detached bool, worker string, at int64) *pb.HostedActor {
	return &pb.HostedActor{
		Actor: &pb.ActorName{Name: name, Namespace: "ns", ActorId: id, OwnerAddr: "tcp:127.0.0.1:1", Class: "*main.Box",
			Detached: detached, WorkerAddr: worker, JobId: "j1", ClassName: "Box", MaxRestarts: -1},
		State: &pb.ActorEvent{ActorId: id, State: tasktable.ActorAlive, TimeUnixNs: at, JobId: "j1", NodeId: "n1",
			WorkerId: []byte("w"), Pid: 42},
	}
}

// TestNodeReportsHostedActors: a control store that starts empty takes
// back, from a node's registration, the actors its workers host: listed
// ALIVE with their pid and options, the named ones found by name again
// (the detached one at its worker); a name another actor took meanwhile
// stays with it; and an actor of a job it never heard of dies with that
// job, the detached one excepted.
func TestNodeReportsHostedActors(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	registerName(t, c, &pb.ActorName{Name: "taken", Namespace: "ns", ActorId: actorID(9), OwnerAddr: "tcp:127.0.0.1:2"})
	id := ids.NewNodeID()
	call(t, c, rpc.MRegisterNode, &pb.NodeInfo{NodeId: id[:], Address: "tcp:127.0.0.1:3", HostedActors: []*pb.HostedActor{
		hosted(actorID(1), "keeper", true, "tcp:127.0.0.1:4", 100),
		hosted(actorID(2), "taken", false, "", 200),
		hosted(actorID(3), "", false, "", 300),
	}}, &pb.Status{})

	got := waitActors(t, c, "the hosted actors listed", func(m map[string]*pb.ActorEvent) bool { return len(m) == 4 })
	k := got[string(actorID(1))]
	if k.State != tasktable.ActorAlive || k.Pid != 42 || k.NodeId != "n1" || !k.Detached || k.Name != "keeper" || k.ClassName != "Box" || k.JobId != "j1" ||
		k.MaxRestarts != -1 {
		t.Errorf("the hosted detached actor: %v", k)
	}
	r := &pb.ActorNameReply{}
	call(t, c, rpc.MLookupActorName, &pb.ActorName{Namespace: "ns", Name: "keeper"}, r)
	if r.Error != "" || !bytes.Equal(r.Actor.ActorId, actorID(1)) || r.Actor.WorkerAddr != "tcp:127.0.0.1:4" || !r.Actor.Detached || r.Actor.Class != "*main.Box" {
		t.Errorf("the hosted detached actor by name: %v %s", r.Actor, r.Error)
	}
	r = &pb.ActorNameReply{}
	call(t, c, rpc.MLookupActorName, &pb.ActorName{Namespace: "ns", Name: "taken"}, r)
	if r.Error != "" || !bytes.Equal(r.Actor.ActorId, actorID(9)) {
		t.Errorf("a name taken before the node registered went to the hosted actor: %v %s", r.Actor, r.Error)
	}
	n := &pb.NodeList{}
	call(t, c, rpc.MListNodes, &pb.Empty{}, n)
	if len(n.Nodes) != 1 || len(n.Nodes[0].HostedActors) != 0 {
		t.Errorf("the node's record keeps its hosted actors: %v", n.Nodes)
	}

	if err := c.Notify(rpc.MJobEnded, &pb.JobRequest{JobId: "j1", Status: JobSucceeded}); err != nil {
		t.Fatal(err)
	}
	got = waitActors(t, c, "the unknown job's actors dead", func(m map[string]*pb.ActorEvent) bool {
		return m[string(actorID(2))].State == tasktable.ActorDead && m[string(actorID(3))].State == tasktable.ActorDead
	})
	if a := got[string(actorID(3))]; a.DeathCause != tasktable.CauseJobFinished {
		t.Errorf("an actor of the ended job: %s", a.DeathCause)
	}
	if a := got[string(actorID(1))]; a.State != tasktable.ActorAlive {
		t.Errorf("the detached actor after its job's end: %s %s", a.State, a.DeathCause)
	}

	// Registering again (a reconnection) changes nothing: the dead stay dead.
	call(t, c, rpc.MRegisterNode, &pb.NodeInfo{NodeId: id[:], Address: "tcp:127.0.0.1:3", HostedActors: []*pb.HostedActor{
		hosted(actorID(3), "", false, "", 300),
	}}, &pb.Status{})
	got = waitActors(t, c, "the same actors", func(m map[string]*pb.ActorEvent) bool { return len(m) == 4 })
	if a := got[string(actorID(3))]; a.State != tasktable.ActorDead {
		t.Errorf("a dead actor reported again: %s", a.State)
	}
}

// TestBadHostedActorsRefused: a registration whose hosted actors lack
// what the control store needs is refused, saying which and why.
func TestBadHostedActorsRefused(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	good := func() *pb.HostedActor { return hosted(actorID(1), "keeper", true, "", 1) }
	for _, tc := range []struct {
		what string
		bad  func(h *pb.HostedActor)
		want string
	}{
		{"no description", func(h *pb.HostedActor) { h.Actor = nil }, "it needs both its description and its state"},
		{"no state", func(h *pb.HostedActor) { h.State = nil }, "it needs both its description and its state"},
		{"short ID", func(h *pb.HostedActor) { h.Actor.ActorId = []byte("x") }, "actor ID of 1 bytes, want 16"},
		{"another actor's state", func(h *pb.HostedActor) { h.State.ActorId = actorID(2) }, "its state is of another actor"},
		{"dead", func(h *pb.HostedActor) { h.State.State = tasktable.ActorDead }, `state "DEAD"`},
		{"detached without a name", func(h *pb.HostedActor) { h.Actor.Name = "" }, "detached without a name"},
	} {
		h := good()
		tc.bad(h)
		id := ids.NewNodeID()
		err := c.Call(t.Context(), rpc.MRegisterNode, &pb.NodeInfo{NodeId: id[:], Address: "tcp:127.0.0.1:3",
			HostedActors: []*pb.HostedActor{good(), h}}, &pb.Status{})
		if msg := remoteErr(err); !strings.Contains(msg, "bad hosted actor 1: "+tc.want) {
			t.Errorf("%s: %v, want %q", tc.what, err, tc.want)
		}
	}
	n := &pb.NodeList{}
	call(t, c, rpc.MListNodes, &pb.Empty{}, n)
	l := &pb.StateList{}
	call(t, c, rpc.MListActors, &pb.StateQuery{}, l)
	if len(n.Nodes) != 0 || len(l.Actors) != 0 {
		t.Errorf("refused registrations left nodes %v and actors %v", n.Nodes, l.Actors)
	}
}
