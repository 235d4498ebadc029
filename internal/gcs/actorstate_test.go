package gcs

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// waitActors polls the control store's actor list until ok holds for it.
func waitActors(t *testing.T, c *rpc.Conn, what string, ok func(map[string]*pb.ActorEvent) bool) map[string]*pb.ActorEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := &pb.StateList{}
		call(t, c, rpc.MListActors, &pb.StateQuery{}, l)
		got := make(map[string]*pb.ActorEvent, len(l.Actors))
		for _, a := range l.Actors {
			got[string(a.Actor.ActorId)] = a.Actor
		}
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: actors %v", what, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitJob(t *testing.T, c *rpc.Conn, id string, ok func(*pb.JobInfo) bool) *pb.JobInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := &pb.JobInfo{}
		call(t, c, rpc.MGetJob, &pb.JobRequest{JobId: id}, j)
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %v", id, j)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startJob(t *testing.T, c *rpc.Conn, job, submission string) {
	t.Helper()
	exe := []byte("a program")
	putChunks(t, c, chunks(sha(exe), exe, 64, nil))
	st := &pb.Status{}
	call(t, c, rpc.MJobStarted, &pb.JobInfo{JobId: job, ExeHash: sha(exe), SubmissionId: submission}, st)
	if st.Error != "" {
		t.Fatal(st.Error)
	}
}

func alive(id, job, name string, detached bool) *pb.ActorEvent {
	return &pb.ActorEvent{ActorId: []byte(id), JobId: job, State: tasktable.ActorAlive, TimeUnixNs: time.Now().UnixNano(),
		ClassName: "Counter", Name: name, Detached: detached, NodeId: "n1"}
}

// TestJobEndsKillItsActors: the control store marks a job's actors DEAD
// when the job ends, without their owner's word: JOB_FINISHED after a
// clean end, OWNER_DIED when the driver died; detached ones live on.
func TestJobEndsKillItsActors(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	startJob(t, c, "clean", "")
	startJob(t, c, "killed", "")
	if err := c.Notify(rpc.MReportEvents, &pb.StateEvents{Actors: []*pb.ActorEvent{
		alive("c1", "clean", "", false), alive("k1", "killed", "", false), alive("kd", "killed", "keeper", true),
	}}); err != nil {
		t.Fatal(err)
	}
	waitActors(t, c, "three actors alive", func(m map[string]*pb.ActorEvent) bool { return len(m) == 3 })
	for _, end := range []*pb.JobRequest{
		{JobId: "clean", Status: JobSucceeded},
		{JobId: "killed", Status: JobFailed, Message: "the driver died: pid 4242 on node ab12cd34 exited without rayo.Shutdown"},
	} {
		if err := c.Notify(rpc.MJobEnded, end); err != nil {
			t.Fatal(err)
		}
	}
	got := waitActors(t, c, "actors of the ended jobs dead", func(m map[string]*pb.ActorEvent) bool {
		return m["c1"].State == tasktable.ActorDead && m["k1"].State == tasktable.ActorDead
	})
	if a := got["c1"]; a.DeathCause != tasktable.CauseJobFinished || a.DeathMessage != "its job clean finished" {
		t.Errorf("actor of the clean job: %s %q", a.DeathCause, a.DeathMessage)
	}
	if a := got["k1"]; a.DeathCause != tasktable.CauseOwnerDied || a.DeathMessage != "its owner, the driver of job killed, died: the driver died: pid 4242 on node ab12cd34 exited without rayo.Shutdown" {
		t.Errorf("actor of the killed driver: %s %q", a.DeathCause, a.DeathMessage)
	}
	if a := got["kd"]; a.State != tasktable.ActorAlive {
		t.Errorf("detached actor: %s %s, want ALIVE", a.State, a.DeathCause)
	}
	if j := waitJob(t, c, "killed", func(j *pb.JobInfo) bool { return JobOver(j.State) }); j.State != JobFailed || j.Message == "" {
		t.Errorf("killed driver's job: %s %q", j.State, j.Message)
	}
	if j := waitJob(t, c, "clean", func(j *pb.JobInfo) bool { return JobOver(j.State) }); j.State != JobSucceeded || j.Message != "" {
		t.Errorf("clean job: %s %q", j.State, j.Message)
	}
}

// TestSubmissionDecidesJobState: how a job submission's entrypoint ended
// (told before or after the driver's end) settles its job's state.
func TestSubmissionDecidesJobState(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	notify := func(r *pb.JobRequest) {
		t.Helper()
		if err := c.Notify(rpc.MJobEnded, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name        string
		driver, sub *pb.JobRequest
		subFirst    bool
		state, msg  string
	}{
		{"stopped after the driver died", &pb.JobRequest{Status: JobFailed, Message: "the driver died"},
			&pb.JobRequest{Status: JobStopped, Message: "stopped on request"}, false, JobStopped, "stopped on request; the driver died"},
		{"stopped before the driver's end", &pb.JobRequest{Status: JobSucceeded},
			&pb.JobRequest{Status: JobStopped, Message: "stopped on request"}, true, JobStopped, "stopped on request"},
		{"killed entrypoint names its signal", &pb.JobRequest{Status: JobFailed, Message: "the driver died"},
			&pb.JobRequest{Status: JobFailed, Message: "the entrypoint ended: signal: killed"}, false, JobFailed, "the driver died; the entrypoint ended: signal: killed"},
		{"clean driver, failing entrypoint", &pb.JobRequest{Status: JobSucceeded},
			&pb.JobRequest{Status: JobFailed, Message: "the entrypoint exited with code 3"}, false, JobFailed, "the entrypoint exited with code 3"},
		{"clean driver, clean entrypoint", &pb.JobRequest{Status: JobSucceeded},
			&pb.JobRequest{Status: JobSucceeded}, false, JobSucceeded, ""},
		{"a status no raylet sends", &pb.JobRequest{Status: "FINISHED"}, nil, false, JobFailed, `gcs: the job's raylet said it ended "FINISHED" ()`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job, sub := "job "+tc.name, "sub "+tc.name
			startJob(t, c, job, sub)
			tc.driver.JobId = job
			if tc.sub != nil {
				tc.sub.SubmissionId = sub
			}
			if tc.subFirst {
				notify(tc.sub)
			}
			notify(tc.driver)
			if tc.sub != nil && !tc.subFirst {
				notify(tc.sub)
			}
			waitJob(t, c, job, func(j *pb.JobInfo) bool { return j.State == tc.state && j.Message == tc.msg })
		})
	}
}

// TestNodeDeathKillsItsActors: the actors of a node declared dead that
// may not restart are NODE_DIED; those whose owners restart them are not.
func TestNodeDeathKillsItsActors(t *testing.T) {
	_, addr := serve(t, Config{HealthTimeout: 300 * time.Millisecond})
	c := dial(t, addr)
	id := ids.NewNodeID()
	registerNode(t, c, id, "10.0.0.1:7000")
	once, again := alive("once", "j", "", false), alive("again", "j", "", false)
	once.NodeId, again.NodeId = id.Name(), id.Name()
	created := &pb.ActorEvent{ActorId: []byte("again"), State: tasktable.ActorPending, TimeUnixNs: 1, MaxRestarts: -1}
	if err := c.Notify(rpc.MReportEvents, &pb.StateEvents{Actors: []*pb.ActorEvent{created, once, again}}); err != nil {
		t.Fatal(err)
	}
	// No heartbeat comes: the node is declared dead, and fenced: the
	// connection it registered on is refused from then on, so the state
	// is read on another.
	got := waitActors(t, dial(t, addr), "the node's actor dead", func(m map[string]*pb.ActorEvent) bool {
		return m["once"] != nil && m["once"].State == tasktable.ActorDead
	})
	if a := got["once"]; a.DeathCause != tasktable.CauseNodeDied || a.DeathMessage != "its node "+id.Name()+" died: no heartbeat for 300ms" {
		t.Errorf("actor on the dead node: %s %q", a.DeathCause, a.DeathMessage)
	}
	if a := got["again"]; a.State != tasktable.ActorAlive {
		t.Errorf("actor its owner restarts: %s %s", a.State, a.DeathCause)
	}
}

// TestNamedActorsListedAfterRestart: a control store started again on the
// same storage lists the named and detached actors, as they were.
func TestNamedActorsListedAfterRestart(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		s1, addr1 := serve(t, storage())
		c1 := dial(t, addr1)
		startJob(t, c1, "j", "")
		if err := c1.Notify(rpc.MReportEvents, &pb.StateEvents{Actors: []*pb.ActorEvent{
			alive("det", "j", "keeper", true), alive("named", "j", "counter", false), alive("plain", "j", "", false), alive("gone", "j", "", true),
		}}); err != nil {
			t.Fatal(err)
		}
		dead := &pb.ActorEvent{ActorId: []byte("gone"), State: tasktable.ActorDead, TimeUnixNs: time.Now().UnixNano(), DeathCause: tasktable.CauseKilled}
		if err := c1.Notify(rpc.MReportEvents, &pb.StateEvents{Actors: []*pb.ActorEvent{dead}}); err != nil {
			t.Fatal(err)
		}
		waitActors(t, c1, "four actors", func(m map[string]*pb.ActorEvent) bool {
			return len(m) == 4 && m["gone"].State == tasktable.ActorDead
		})
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}

		_, addr2 := serve(t, storage())
		c2 := dial(t, addr2)
		got := waitActors(t, c2, "after the restart", func(m map[string]*pb.ActorEvent) bool { return len(m) == 3 })
		if a := got["det"]; a == nil || a.State != tasktable.ActorAlive || a.Name != "keeper" || !a.Detached || a.ClassName != "Counter" {
			t.Errorf("detached actor after the restart: %v", a)
		}
		if a := got["named"]; a == nil || a.State != tasktable.ActorAlive {
			t.Errorf("named actor after the restart: %v", a)
		}
		if a := got["gone"]; a == nil || a.State != tasktable.ActorDead || a.DeathCause != tasktable.CauseKilled {
			t.Errorf("killed detached actor after the restart: %v", a)
		}
		// The job ends on the new control store: the named actor dies
		// with it, and a third control store knows.
		if err := c2.Notify(rpc.MJobEnded, &pb.JobRequest{JobId: "j", Status: JobSucceeded}); err != nil {
			t.Fatal(err)
		}
		waitActors(t, c2, "named actor dead", func(m map[string]*pb.ActorEvent) bool { return m["named"].State == tasktable.ActorDead })
		_, addr3 := serve(t, storage())
		got = waitActors(t, dial(t, addr3), "after a second restart", func(m map[string]*pb.ActorEvent) bool { return len(m) == 3 })
		if a := got["named"]; a.State != tasktable.ActorDead || a.DeathCause != tasktable.CauseJobFinished {
			t.Errorf("named actor of the ended job: %s %s", a.State, a.DeathCause)
		}
		if a := got["det"]; a.State != tasktable.ActorAlive {
			t.Errorf("detached actor of the ended job: %s %s", a.State, a.DeathCause)
		}
	})
}

// TestCorruptActorRecordFailsLoad: a record in the actors table that
// does not decode, or is not a named or detached actor's, stops the
// control store from starting, saying which.
func TestCorruptActorRecordFailsLoad(t *testing.T) {
	plain, err := proto.Marshal(&pb.ActorRecord{Actor: &pb.ActorEvent{ActorId: []byte("a"), State: tasktable.ActorAlive}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"garbage": {0xff, 0xff}, "plain actor": plain} {
		t.Run(name, func(t *testing.T) {
			st := NewMemoryStore()
			if err := st.Put(t.Context(), TableActors, "61", b); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s, err := Serve(ln, Config{Store: st})
			if err == nil {
				_ = s.Close()
				t.Fatal("a control store started on a corrupt actors table")
			}
			if !strings.Contains(err.Error(), `gcs: load actors record "61"`) {
				t.Errorf("error %q does not name the record", err)
			}
		})
	}
}
