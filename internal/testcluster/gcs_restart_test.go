package testcluster

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// gcsCall makes one request to the cluster's control store.
func gcsCall(t *testing.T, c *Cluster, m rpc.Method, req, resp proto.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx)
	if err != nil {
		t.Fatalf("dial the control store: %v", err)
	}
	defer conn.Close()
	if err := conn.Call(ctx, m, req, resp); err != nil {
		t.Fatalf("control store method %d: %v", m, err)
	}
}

// headSession is the head's session folder, as the control store has it.
func headSession(t *testing.T, c *Cluster) string {
	t.Helper()
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Head {
			return n.SessionDir
		}
	}
	t.Fatal("no head among the nodes")
	return ""
}

// gcsPID reads the pid of the head's control store process.
func gcsPID(session string) (int, error) {
	b, err := os.ReadFile(filepath.Join(session, node.GCSPIDFile))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// aliveIDs are the IDs of the nodes the control store has alive, sorted.
func aliveIDs(nodes []*pb.NodeInfo) []string {
	var out []string
	for _, n := range nodes {
		if n.State == gcs.StateAlive {
			out = append(out, hex.EncodeToString(n.NodeId))
		}
	}
	sort.Strings(out)
	return out
}

// restartFigures are the times from the control store's SIGKILL.
type restartFigures struct {
	answers    time.Duration // until the new control store answered
	registered time.Duration // until every node had registered with it again
}

// killGCS SIGKILLs the head's control store process and waits until the
// head has started a new one and every node in want is ALIVE on it,
// having registered (and so heartbeat) since the new one answered.
func killGCS(t *testing.T, c *Cluster, want []string) restartFigures {
	t.Helper()
	session := headSession(t, c)
	pid, err := gcsPID(session)
	if err != nil {
		t.Fatalf("the control store's pid: %v", err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the control store (pid %d): %v", pid, err)
	}
	var fig restartFigures
	var upMs int64
	var last []*pb.NodeInfo
	deadline := killed.Add(30 * time.Second)
	for {
		newPID, _ := gcsPID(session)
		nodes, err := c.ListNodes()
		if err == nil && newPID != pid && upMs == 0 {
			fig.answers = time.Since(killed)
			upMs = time.Now().UnixMilli()
		}
		if upMs != 0 && err == nil {
			last = nodes
			fresh := 0
			for _, n := range nodes {
				if n.State == gcs.StateAlive && n.LastHeartbeatUnixMs > upMs {
					fresh++
				}
			}
			if ids := aliveIDs(nodes); fresh == len(want) && strings.Join(ids, ",") == strings.Join(want, ",") {
				fig.registered = time.Since(killed)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes %v not ALIVE again within 30s of the control store's kill (answered after %v; last list %v)\n%s",
				want, fig.answers, last, readLog(session))
		}
		time.Sleep(20 * time.Millisecond) // polling other processes
	}
	if log := readLog(session); !strings.Contains(log, fmt.Sprintf("(pid %d) exited unexpectedly", pid)) || !strings.Contains(log, "restarting it in") {
		t.Fatalf("the head did not log the restart:\n%s", log)
	}
	return fig
}

func readLog(session string) string {
	b, _ := os.ReadFile(filepath.Join(session, node.GCSLogFile))
	return string(b)
}

// waitCount waits until dir holds n files.
func waitCount(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		if len(entries) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks started within 30s", len(entries), n)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's files
	}
}

// TestControlStoreRestartWithRedis kills the control store process under
// running tasks: the head starts it again, it loads its tables from
// Redis, the nodes register again with their IDs, the tasks finish, and
// the jobs, KV entries and the named detached actor are still there.
func TestControlStoreRestartWithRedis(t *testing.T) {
	redis := redistest.Start(t)
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := Start(t, rayo, 2, "--redis-address", redis)
	other := c.AddNode(2)
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	want := aliveIDs(nodes)
	if len(want) != 2 {
		t.Fatalf("alive nodes: %v", want)
	}

	kv := &pb.KVReply{}
	gcsCall(t, c, rpc.MKVPut, &pb.KVEntry{Namespace: "outage", Key: "greeting", Value: []byte("hello"), Overwrite: true}, kv)
	if kv.Error != "" {
		t.Fatalf("KV put: %s", kv.Error)
	}

	const taskMs = 4000
	dir := t.TempDir()
	d := start(t, c.Head, driver, "outage", dir, fmt.Sprint(taskMs))
	d.until(t, "submitted", 30*time.Second)
	waitCount(t, dir, 4)
	running := time.Now()
	// The actor's worker is recorded (ActorAlive) before the kill.
	waitSurvivorAlive(t, c)
	before := &pb.JobList{}
	gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, before)
	if len(before.Jobs) != 1 || before.Jobs[0].State != gcs.JobRunning {
		t.Fatalf("jobs before the kill: %v", before.Jobs)
	}

	killedAfter := time.Since(running)
	if killedAfter > taskMs*time.Millisecond/2 {
		t.Fatalf("the tasks were nearly done (%v of %d ms) before the kill", killedAfter, taskMs)
	}
	fig := killGCS(t, c, want)
	t.Logf("control store SIGKILLed %v after the tasks started: answering again after %v, both nodes ALIVE and registered again after %v",
		killedAfter.Round(time.Millisecond), fig.answers.Round(time.Millisecond), fig.registered.Round(time.Millisecond))

	if got := d.until(t, "squares", 60*time.Second); got != "0,1,4,9" {
		t.Fatalf("squares through the outage: %q", got)
	}
	finished := time.Since(running)
	if ns := d.until(t, "nodes", time.Second); strings.Count(ns, ",") != 1 {
		t.Fatalf("the tasks ran on %q, want both nodes", ns)
	}
	t.Logf("tasks of %d ms running through the outage finished %v after they started", taskMs, finished.Round(time.Millisecond))

	checkRestoredFromRedis(t, c, other, driver, before)
}

// waitSurvivorAlive waits until the control store has the worker of the
// detached actor "survivor" of namespace "outage".
func waitSurvivorAlive(t *testing.T, c *Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := &pb.ActorNameReply{}
		gcsCall(t, c, rpc.MLookupActorName, &pb.ActorName{Namespace: "outage", Name: "survivor"}, r)
		if r.Error == "" && r.Actor.GetWorkerAddr() != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the detached actor's name: %+v", r)
		}
		time.Sleep(20 * time.Millisecond) // polling the control store
	}
}

// checkRestoredFromRedis checks that the restarted control store still has
// the job listed before the kill, the KV entry and the detached actor, and
// that new tasks run on both nodes.
func checkRestoredFromRedis(t *testing.T, c *Cluster, other *Node, driver string, before *pb.JobList) {
	t.Helper()
	after := &pb.JobList{}
	gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, after)
	if len(after.Jobs) != 1 || after.Jobs[0].JobId != before.Jobs[0].JobId {
		t.Fatalf("jobs after the restart: %v, before: %v", after.Jobs, before.Jobs)
	}
	kv := &pb.KVReply{}
	gcsCall(t, c, rpc.MKVGet, &pb.KVEntry{Namespace: "outage", Key: "greeting"}, kv)
	if !kv.Found || string(kv.Value) != "hello" {
		t.Fatalf("KV after the restart: %+v", kv)
	}
	out := run(t, other, driver, "outage-check")
	if !strings.HasPrefix(out["actor_after"], "2@") {
		t.Fatalf("the detached actor after the restart: %q (want its second count)", out["actor_after"])
	}
	if strings.Count(out["nodes"], ",") != 1 {
		t.Fatalf("new tasks after the restart ran on %q, want both nodes (%s and %s)", out["nodes"], c.Head.ID(), other.ID())
	}
}

// TestControlStoreRestartWithoutRedis kills a control store that keeps
// its tables in memory: the new one starts empty of jobs and KV, and the
// nodes register with it again.
func TestControlStoreRestartWithoutRedis(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := Start(t, rayo, 1)
	c.AddNode(1)
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	want := aliveIDs(nodes)
	run(t, c.Head, driver, "spread")
	jobs := &pb.JobList{}
	gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, jobs)
	if len(jobs.Jobs) != 1 {
		t.Fatalf("jobs before the kill: %v", jobs.Jobs)
	}
	gcsCall(t, c, rpc.MKVPut, &pb.KVEntry{Namespace: "n", Key: "k", Value: []byte("v")}, &pb.KVReply{})

	fig := killGCS(t, c, want)
	t.Logf("in-memory control store SIGKILLed: answering again after %v, both nodes ALIVE and registered again after %v",
		fig.answers.Round(time.Millisecond), fig.registered.Round(time.Millisecond))

	jobs = &pb.JobList{}
	gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, jobs)
	if len(jobs.Jobs) != 0 {
		t.Fatalf("jobs on a restarted in-memory control store: %v", jobs.Jobs)
	}
	kv := &pb.KVReply{}
	gcsCall(t, c, rpc.MKVGet, &pb.KVEntry{Namespace: "n", Key: "k"}, kv)
	if kv.Found {
		t.Fatalf("KV on a restarted in-memory control store: %+v", kv)
	}
	// The cluster works on: a new job spreads over both nodes.
	if out := run(t, c.Head, driver, "spread"); strings.Count(out["nodes"], ",") != 1 {
		t.Fatalf("tasks after the restart ran on %q, want both nodes", out["nodes"])
	}
}
