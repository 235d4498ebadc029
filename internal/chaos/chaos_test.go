package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/testcluster"
)

// full is whether to run the full sizes (RAYO_CHAOS=full, make chaos).
var full = os.Getenv("RAYO_CHAOS") == "full"

// size is n in the short suite and long in the full one.
func size(short, long int) int {
	if full {
		return long
	}
	return short
}

// row is one line of the table the suite prints.
type row struct {
	scenario string
	faults   string
	done     int
	lost     int
	took     time.Duration
}

var (
	tableMu sync.Mutex // protects table
	table   []row
)

func record(r row) {
	tableMu.Lock()
	table = append(table, r)
	tableMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	tableMu.Lock()
	if len(table) > 0 {
		writeTable(os.Stdout, table)
	}
	tableMu.Unlock()
	os.Exit(code)
}

func writeTable(w io.Writer, rows []row) {
	version := "short"
	if full {
		version = "full"
	}
	fmt.Fprintf(w, "\nchaos suite (%s)\n", version)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfaults injected\twork done\twork lost\ttime")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%v\n", r.scenario, r.faults, r.done, r.lost, r.took.Round(100*time.Millisecond))
	}
	tw.Flush()
}

// driver is a running chaos driver whose key=value lines are read as they
// come.
type driver struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	kv    map[string]string
	all   []string
}

func startDriver(t *testing.T, n *testcluster.Node, bin string, env []string, args ...string) *driver {
	t.Helper()
	cmd := n.Command(bin, args...)
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &driver{cmd: cmd, stdin: stdin, lines: make(chan string, 1000), kv: map[string]string{}}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return d
}

// until reads lines until key has value (or, value "", any), and returns
// what the driver said since the last call.
func (d *driver) until(t *testing.T, key, value string, within time.Duration) map[string]string {
	t.Helper()
	timeout := time.After(within)
	for {
		if v, ok := d.kv[key]; ok && (value == "" || v == value) {
			out := d.kv
			d.kv = map[string]string{}
			return out
		}
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("the driver ended before %s=%s:\n%s", key, value, strings.Join(d.all, "\n"))
			}
			d.all = append(d.all, l)
			if k, v, ok := strings.Cut(l, "="); ok && !strings.Contains(k, " ") {
				d.kv[k] = v
			}
		case <-timeout:
			t.Fatalf("no %s=%s from the driver within %v:\n%s", key, value, within, strings.Join(d.all, "\n"))
		}
	}
}

func (d *driver) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(d.stdin, line+"\n"); err != nil {
		t.Fatalf("write to the driver: %v", err)
	}
}

// finish waits for the driver to exit well.
func (d *driver) finish(t *testing.T) {
	t.Helper()
	for l := range d.lines {
		d.all = append(d.all, l)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Fatalf("driver: %v\n%s", err, strings.Join(d.all, "\n"))
	}
}

func atoi(t *testing.T, kv map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(kv[key])
	if err != nil {
		t.Fatalf("%s=%q from the driver: %v (all: %v)", key, kv[key], err, kv)
	}
	return n
}

// suite is the cluster the scenarios share: a head and two nodes of one
// CPU each, with Redis.
type suite struct {
	c      *testcluster.Cluster
	rayo   string // the rayo executable, for the clusters of scenarios of their own
	driver string
}

// victim picks a random node other than the head.
func (s *suite) victim() *testcluster.Node {
	return s.c.Nodes[1+rand.IntN(len(s.c.Nodes)-1)]
}

// killAndRestart SIGKILLs n (its daemon and workers), waits until the
// control store has it DEAD, and starts it again as a new node.
func (s *suite) killAndRestart(t *testing.T, n *testcluster.Node) {
	t.Helper()
	id := n.ID()
	n.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, err := s.c.ListNodes()
		dead := false
		for _, info := range nodes {
			if nid, err := ids.NodeIDFrom(info.NodeId); err == nil && nid.Name() == id && info.State == gcs.StateDead {
				dead = true
			}
		}
		if err == nil && dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not DEAD within 30s of its kill", id)
		}
		time.Sleep(20 * time.Millisecond) // polling the control store
	}
	n.Restart()
}

// killControlStore SIGKILLs the head's control store process and waits
// until the head has started another and every node has registered with
// it again.
func (s *suite) killControlStore(t *testing.T) {
	t.Helper()
	var session string
	nodes, err := s.c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Head && n.State == gcs.StateAlive {
			session = n.SessionDir
		}
	}
	pidFile := filepath.Join(session, node.GCSPIDFile)
	readPID := func() int {
		b, _ := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	pid := readPID()
	if pid == 0 {
		t.Fatalf("no control store pid in %s", pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the control store (pid %d): %v", pid, err)
	}
	var upMs int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := s.c.ListNodes()
		if err == nil && upMs == 0 && readPID() != pid {
			upMs = time.Now().UnixMilli()
		}
		fresh := 0
		for _, n := range nodes {
			if n.State == gcs.StateAlive && upMs != 0 && n.LastHeartbeatUnixMs > upMs {
				fresh++
			}
		}
		if err == nil && fresh == len(s.c.Nodes) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control store did not come back with %d nodes within 60s", len(s.c.Nodes))
		}
		time.Sleep(20 * time.Millisecond) // polling the control store
	}
}

// taskStates counts the attempts of the tasks named name by state, as the
// control store's state table has them.
func (s *suite) taskStates(t *testing.T, name string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range listTasks(t, s.c) {
		if r.Task.GetName() == name {
			out[r.Task.GetState()]++
		}
	}
	return out
}

// listTasks is the control store's state table of task attempts.
func listTasks(t *testing.T, c *testcluster.Cluster) []*pb.TaskRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	list := &pb.StateList{}
	if err := conn.Call(ctx, rpc.MListTasks, &pb.StateQuery{Limit: 100000}, list); err != nil {
		t.Fatal(err)
	}
	return list.Tasks
}

// TestChaos runs every scenario on one cluster, one after the other.
func TestChaos(t *testing.T) {
	redis := redistest.Start(t)
	rayo := testcluster.Build(t, "./cmd/rayo")
	s := &suite{rayo: rayo, driver: testcluster.Build(t, "./internal/chaos/testdata/chaos")}
	s.c = testcluster.Start(t, rayo, 1, "--redis-address", redis)
	s.c.AddNode(1)
	s.c.AddNode(1)
	for _, sc := range []struct {
		name string
		run  func(t *testing.T, s *suite) row
	}{
		{"retry accounting", retryAccounting},
		{"rpc faults", rpcFaults},
		{"task chaos", taskChaos},
		{"actor at-least-once", actorChaos},
		{"lineage", lineageChaos},
		{"control store", controlStoreChaos},
		{"partition", partitionChaos}, // partition.go
	} {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			start := time.Now()
			r := sc.run(t, s)
			r.scenario, r.took = sc.name, time.Since(start)
			record(r)
			if r.lost != 0 {
				t.Errorf("%s lost %d pieces of work", sc.name, r.lost)
			}
		})
	}
}

// retryAccounting: three SIGKILLs of a task with MaxRetries(3); it
// succeeds on the 4th attempt, and the state history says so. A returned
// error is retried only with RetryExceptions.
func retryAccounting(t *testing.T, s *suite) row {
	dir := t.TempDir()
	d := startDriver(t, s.c.Head, s.driver, nil, "retry", dir)
	d.finish(t)
	kv := map[string]string{}
	for _, l := range d.all {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	lost := 0
	if kv["retry_result"] != "4" || kv["retry_err"] != "<nil>" {
		t.Errorf("the task killed 3 times: result %q, error %q; want 4 (its 4th attempt)", kv["retry_result"], kv["retry_err"])
		lost++
	}
	count := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	if kv["app_is_task_failed"] != "true" || count("app") != "1" {
		t.Errorf("a returned error without RetryExceptions ran %s times (failed: %s), want once", count("app"), kv["app_is_task_failed"])
		lost++
	}
	if kv["app_retried_is_task_failed"] != "true" || count("appretried") != "4" {
		t.Errorf("a returned error with RetryExceptions and MaxRetries(3) ran %s times, want 4", count("appretried"))
		lost++
	}
	var states map[string]int
	deadline := time.Now().Add(30 * time.Second)
	for {
		states = s.taskStates(t, "suicidal")
		if states["FAILED"] == 3 && states["FINISHED"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("state history of the task killed 3 times: %v, want 3 FAILED and 1 FINISHED", states)
			lost++
			break
		}
		time.Sleep(100 * time.Millisecond) // events reach the control store in batches
	}
	return row{faults: "3 worker SIGKILLs", done: 3, lost: lost}
}

// rpcFaults: PushTask and GetObject requests and replies, and
// RequestLease requests, dropped at random in the driver.
func rpcFaults(t *testing.T, s *suite) row {
	dir := t.TempDir()
	n := size(100, 500)
	// Lease requests are dropped, not their replies: a lease granted
	// whose reply is lost stays with nobody to return it (as in Ray, the
	// suite drops only what the protocol retries).
	faults := "PushTask=0.05:0.05,RequestLease=0.05:0"
	nested := "GetObject=0.05:0.05,RequestLease=0.05:0"
	d := startDriver(t, s.c.Head, s.driver, []string{rpc.EnvRPCFailure + "=" + faults}, "rpcfault", dir, fmt.Sprint(n), nested)
	kv := d.until(t, "round_done", "0", 5*time.Minute)
	d.finish(t)
	dups, _ := filepath.Glob(filepath.Join(dir, "dup-*"))
	ok, injected := atoi(t, kv, "ok"), atoi(t, kv, "injected")
	if ok != 2*n {
		t.Errorf("%d of %d retriable tasks right under RPC faults (first error: %s)", ok, 2*n, kv["first_err"])
	}
	if len(dups) > 0 {
		t.Errorf("%d at-most-once tasks ran twice: %v", len(dups), dups)
	}
	if injected == 0 {
		t.Error("no fault was injected")
	}
	t.Logf("%d retriable tasks right, %d at-most-once tasks ran (once each), %d failed for the faults; %d RPCs dropped",
		ok, atoi(t, kv, "once_ok"), atoi(t, kv, "once_failed"), injected)
	return row{faults: fmt.Sprintf("%d RPCs dropped (PushTask, GetObject, RequestLease)", injected), done: ok + atoi(t, kv, "once_ok"), lost: 2*n - ok + len(dups)}
}

// taskChaos: nested tasks while a random non-head node is killed and
// restarted each round.
func taskChaos(t *testing.T, s *suite) row {
	rounds, n := size(1, 3), size(30, 150) // full: CPUs × 2 × 75 outer tasks over 3 rounds
	d := startDriver(t, s.c.Head, s.driver, nil, "tasks", fmt.Sprint(rounds), fmt.Sprint(n), "2")
	done, lost := 0, 0
	for r := 0; r < rounds; r++ {
		d.until(t, "round", fmt.Sprint(r), 2*time.Minute)
		s.killAndRestart(t, s.victim())
		kv := d.until(t, "round_done", fmt.Sprint(r), 5*time.Minute)
		ok := atoi(t, kv, "ok")
		done += ok * 3 // an outer task and its two leaves
		lost += n - ok
		if ok != n {
			t.Errorf("round %d: %d of %d nested tasks right (wrong %s, failed %s, first error %s)", r, ok, n, kv["wrong"], kv["failed"], kv["first_err"])
		}
		d.send(t, "next")
	}
	d.finish(t)
	return row{faults: fmt.Sprintf("%d node kills", rounds), done: done, lost: lost}
}

// actorChaos: actors with unlimited restarts and retries under a node
// kill.
func actorChaos(t *testing.T, s *suite) row {
	actors, calls := len(s.c.Nodes), size(200, 600)
	gate := filepath.Join(t.TempDir(), "go")
	d := startDriver(t, s.c.Head, s.driver, nil, "actors", fmt.Sprint(actors), fmt.Sprint(calls), gate)
	start := d.until(t, "round", "0", 2*time.Minute)
	// The victim is a node that runs an actor: found by the session
	// folder the control store has for it, which lies in the node's state
	// folder.
	var victim *testcluster.Node
	nodes, err := s.c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range nodes {
		id, err := ids.NodeIDFrom(info.NodeId)
		if err != nil || info.Head || info.State != gcs.StateAlive || !strings.Contains(start["actor_nodes"], id.Name()) {
			continue
		}
		for _, n := range s.c.Nodes[1:] {
			if strings.HasPrefix(info.SessionDir, n.StateDir+string(filepath.Separator)) {
				victim = n
			}
		}
	}
	if victim == nil {
		t.Fatalf("no node but the head runs an actor (actors on %s)", start["actor_nodes"])
	}
	killed := victim.ID()
	s.killAndRestart(t, victim)
	if err := os.WriteFile(gate, nil, 0o644); err != nil { // the calls go on
		t.Fatal(err)
	}
	kv := d.until(t, "round_done", "0", 5*time.Minute)
	d.finish(t)
	ok, missing, disorder := atoi(t, kv, "ok"), atoi(t, kv, "missing"), atoi(t, kv, "disorder")
	if ok != actors*calls || missing != 0 || disorder != 0 {
		t.Errorf("%d of %d calls answered, %d missing, %d out of order within an incarnation or from an old one (first error %s)", ok, actors*calls, missing, disorder, kv["first_err"])
	}
	// The actor on the killed node died with it (its worker is in the
	// node's process group, and a node's workers die with it) and was
	// started again: a second incarnation answered its gated calls.
	for _, in := range strings.Split(kv["incarnations"], ",") {
		node, count, _ := strings.Cut(in, ":")
		if node == killed && count == "1" {
			t.Errorf("the actor on %s (%s), which was killed, answered every call from its first process (incarnations by node: %s)", victim.Name, killed, kv["incarnations"])
		}
	}
	restarts := atoi(t, kv, "restarts")
	if restarts == 0 {
		t.Errorf("no actor restarted after %s was killed (incarnations by node: %s)", victim.Name, kv["incarnations"])
	}
	t.Logf("%d calls on %d actors (on %s), %s killed, %d restarts (incarnations by node: %s)", ok, actors, start["actor_nodes"], victim.Name, restarts, kv["incarnations"])
	return row{faults: fmt.Sprintf("1 node kill (%d actor restarts)", restarts), done: ok, lost: missing + disorder}
}

// lineageChaos: objects whose node is killed are made again for the tasks
// that read them.
func lineageChaos(t *testing.T, s *suite) row {
	rounds, n := size(1, 3), size(100, 1000)
	victim := s.victim()
	d := startDriver(t, s.c.Head, s.driver, nil, "lineage", fmt.Sprint(rounds), fmt.Sprint(n), victim.ID())
	done, lost := 0, 0
	for r := 0; r < rounds; r++ {
		d.until(t, "round", fmt.Sprint(r), 5*time.Minute)
		s.killAndRestart(t, victim)
		d.send(t, victim.ID())
		kv := d.until(t, "round_done", fmt.Sprint(r), 5*time.Minute)
		ok := atoi(t, kv, "ok")
		done += ok
		lost += n - ok
		if ok != n {
			t.Errorf("round %d: %d of %d readers of lost objects succeeded (wrong %s, failed %s, first error %s)", r, ok, n, kv["wrong"], kv["failed"], kv["first_err"])
		}
	}
	d.finish(t)
	return row{faults: fmt.Sprintf("%d node kills (%d objects lost)", rounds, rounds*n), done: done, lost: lost}
}

// controlStoreChaos: the control store SIGKILLed once per round, with
// Redis, while tasks run.
func controlStoreChaos(t *testing.T, s *suite) row {
	rounds, n := size(1, 3), size(6, 30)
	d := startDriver(t, s.c.Head, s.driver, nil, "gcs", fmt.Sprint(rounds), fmt.Sprint(n))
	done, lost := 0, 0
	for r := 0; r < rounds; r++ {
		d.until(t, "round", fmt.Sprint(r), 2*time.Minute)
		s.killControlStore(t)
		kv := d.until(t, "round_done", fmt.Sprint(r), 5*time.Minute)
		ok := atoi(t, kv, "ok")
		done += ok
		lost += n - ok
		if ok != n {
			t.Errorf("round %d: %d of %d tasks right through the control store's kill (first error %s)", r, ok, n, kv["first_err"])
		}
		d.send(t, "next")
	}
	d.finish(t)
	return row{faults: fmt.Sprintf("%d control store kills", rounds), done: done, lost: lost}
}
