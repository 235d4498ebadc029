package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildRayo builds this command once per test binary run.
func buildRayo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rayo")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// buildDriver builds the test driver program in testdata/detached.
func buildDriver(t *testing.T) string {
	t.Helper()
	driver := filepath.Join(t.TempDir(), "detached")
	if out, err := exec.Command("go", "build", "-o", driver, "./testdata/detached").CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	return driver
}

// head starts a head with cpus CPUs under the test's control and returns
// its address once it answers.
func (e clusterEnv) head(t *testing.T, cpus int) string {
	t.Helper()
	port := freePort(t)
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", fmt.Sprint(cpus))
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type clusterEnv struct {
	bin   string
	state string
}

func (e clusterEnv) cmd(args ...string) *exec.Cmd {
	c := exec.Command(e.bin, args...)
	c.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS=", "RAYO_TOKEN=")
	return c
}

// daemon runs `rayo start ... --block` under the test's control.
func (e clusterEnv) daemon(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	c := e.cmd(append(args, "--block")...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Process.Kill()
		_ = c.Wait()
		if t.Failed() {
			t.Logf("daemon %v said:\n%s", args, out.String())
		}
	})
	return c
}

type status struct {
	Nodes []struct {
		NodeID    string             `json:"node_id"`
		Address   string             `json:"address"`
		State     string             `json:"state"`
		Resources map[string]float64 `json:"resources"`
		Available map[string]float64 `json:"available"`
		Pending   map[string]float64 `json:"pending_demand"`
	} `json:"nodes"`
}

func (e clusterEnv) status(args ...string) (status, error) {
	var st status
	out, err := e.cmd(append([]string{"status", "--json"}, args...)...).CombinedOutput()
	if err != nil {
		return st, fmt.Errorf("%v: %s", err, out)
	}
	return st, json.Unmarshal(out, &st)
}

// waitFor polls `rayo status` until cond holds, and returns how long it took.
func (e clusterEnv) waitFor(t *testing.T, within time.Duration, what string, cond func(status) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		st, err := e.status()
		if err == nil && cond(st) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v (last status %+v, %v)", what, within, st, err)
		}
		time.Sleep(50 * time.Millisecond) // polling daemons in other processes
	}
}

func count(st status, state string) int {
	n := 0
	for _, x := range st.Nodes {
		if x.State == state {
			n++
		}
	}
	return n
}

func TestClusterStartStatusAndNodeDeath(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "2")
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	e.daemon(t, "start", "--address", addr, "--num-cpus", "1", "--resources", `{"special": 2}`)
	victim := e.daemon(t, "start", "--address", addr, "--num-cpus", "1")
	e.waitFor(t, 20*time.Second, "three nodes alive", func(st status) bool { return count(st, "ALIVE") == 3 })

	st, _ := e.status()
	special := 0
	for _, n := range st.Nodes {
		if n.Resources["special"] == 2 {
			special++
		}
	}
	if special != 1 {
		t.Fatalf("custom resource not shown: %+v", st)
	}

	// A node killed outright is declared dead within the stated bound.
	if err := victim.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d := e.waitFor(t, 10*time.Second, "killed node declared dead", func(st status) bool {
		return count(st, "DEAD") == 1 && count(st, "ALIVE") == 2
	})
	t.Logf("killed node declared DEAD after %v", d)

	// The wrong token is refused with a clear message and a failing exit.
	out, err := e.cmd("status", "--address", addr, "--token", "wrong").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "token") {
		t.Fatalf("wrong token: %v %s", err, out)
	}
}

func TestClusterUnreachable(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	out, err := e.cmd("status", "--address", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--token", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot reach the cluster") {
		t.Fatalf("unreachable cluster: %v %s", err, out)
	}
	out, err = e.cmd("status").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no cluster address") {
		t.Fatalf("no cluster: %v %s", err, out)
	}
	// Listening beyond loopback without a token is refused.
	out, err = e.cmd("start", "--address", "127.0.0.1:1", "--host", "0.0.0.0", "--block").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "token") {
		t.Fatalf("node beyond loopback without a token: %v %s", err, out)
	}
}

func TestDaemonsStartInBackgroundAndStop(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	port := freePort(t)
	const secret = "a-token-only-this-test-knows-3c1f9a"
	out, err := e.cmd("start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "1", "--token", secret).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "started a cluster") {
		t.Fatalf("start: %v %s", err, out)
	}
	// What the daemon said it started, relayed by rayo start, and the
	// cluster record it wrote for drivers and commands on this machine.
	for _, want := range []string{
		fmt.Sprintf("rayo: started a cluster; its address is 127.0.0.1:%d\n", port),
		fmt.Sprintf("rayo: add a node with: rayo start --address 127.0.0.1:%d (token in %s, or RAYO_TOKEN)\n", port, e.state),
		"rayo: session folder " + e.state,
		"rayo: object store ",
	} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("rayo start does not say %q:\n%s", want, out)
		}
	}
	record := filepath.Join(e.state, "cluster.json")
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("no cluster record after start: %v", err)
	}
	st, err := e.status()
	if err != nil || count(st, "ALIVE") != 1 {
		t.Fatalf("status after start: %+v %v", st, err)
	}
	pids, _ := filepath.Glob(filepath.Join(e.state, "daemons", "*.pid"))
	if len(pids) != 1 {
		t.Fatalf("pid files: %v", pids)
	}
	var pid int
	_, _ = fmt.Sscanf(filepath.Base(pids[0]), "%d.pid", &pid)
	// Every user can read a command line: the token is not on the daemon's.
	if argv, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || bytes.Contains(argv, []byte(secret)) {
		t.Fatalf("the daemon's command line %q (%v) holds the token", argv, err)
	}
	// A record planted for another process (here one whose pid a daemon
	// might have had) must not get it signalled.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	planted := filepath.Join(e.state, "daemons", fmt.Sprintf("%d.pid", other.Process.Pid))
	if err := os.WriteFile(planted, []byte(fmt.Sprint(other.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = e.cmd("stop").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stopped 1") {
		t.Fatalf("stop: %v %s", err, out)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Fatalf("daemon %d still running after stop", pid)
	}
	// The daemon that wrote the cluster record removes it as it exits.
	if _, err := os.Stat(record); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cluster record after stop: %v", err)
	}
	// A process killed stays a zombie until this test reaps it.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", other.Process.Pid)); err != nil || bytes.Contains(st, []byte(") Z ")) {
		t.Fatalf("rayo stop killed the process of a planted record: %q %v", st, err)
	}
	if _, err := e.status(); err == nil {
		t.Fatal("status still answers after stop")
	}
}

func TestDriversJoinAndDetachedActorOutlivesThem(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	driver := buildDriver(t)
	addr := e.head(t, 2)
	run := func(mode string) (string, error) {
		c := exec.Command(driver, mode)
		c.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS="+addr, "RAYO_TOKEN=")
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, step := range []struct{ mode, want string }{
		{"create", "count 1"}, // the driver ends; the actor stays
		{"incr", "count 2"},   // another driver finds it, state intact
		{"incr", "count 3"},
		{"kill", "killed"},
	} {
		out, err := run(step.mode)
		if err != nil || !strings.HasSuffix(out, step.want) {
			t.Fatalf("%s: want %q, got %q (%v)", step.mode, step.want, out, err)
		}
		// The task's output reaches the driver, prefixed, through the raylet.
		if !regexp.MustCompile(`(?m)^\(double pid=\d+\) doubling 21$`).MatchString(out) {
			t.Fatalf("%s: worker output not streamed to the driver: %q", step.mode, out)
		}
		// A driver that has ended leaves no folder behind.
		if left, _ := filepath.Glob(filepath.Join(e.state, "job-*")); len(left) != 0 {
			t.Fatalf("%s: the ended driver left %v", step.mode, left)
		}
	}
	out, err := run("incr")
	if err == nil || !strings.Contains(out, "keeper") {
		t.Fatalf("after kill, the name should be gone: %q %v", out, err)
	}
}

func TestStatusShowsPendingDemand(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	driver := buildDriver(t)
	addr := e.head(t, 1)
	busy := exec.Command(driver, "busy")
	busy.Env = append(os.Environ(), "RAYO_STATE_DIR="+e.state, "RAYO_ADDRESS="+addr, "RAYO_TOKEN=")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })
	var pending float64
	e.waitFor(t, 15*time.Second, "pending CPU demand shown", func(st status) bool {
		if len(st.Nodes) == 0 {
			return false
		}
		pending = st.Nodes[0].Pending["CPU"]
		return pending >= 1
	})
	t.Logf("pending demand: CPU %g", pending)
	out, err := e.cmd("status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pending demand: CPU") {
		t.Fatalf("status table: %v\n%s", err, out)
	}
}

func TestMicrobenchmarkAgainstCluster(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	port := freePort(t)
	start := time.Now()
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "2")
	usable := e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	t.Logf("rayo start to a usable node: %v (first status answered %v after the polls began)", time.Since(start), usable)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e.daemon(t, "start", "--address", addr, "--num-cpus", "1")
	e.waitFor(t, 20*time.Second, "second node up", func(st status) bool { return count(st, "ALIVE") == 2 })
	out, err := e.cmd("microbenchmark", "--json", "--address", addr, "--duration", "30ms", "--put-mib", "16",
		"--filter", "^(single_client_tasks_sync|cross_node_.*)$").CombinedOutput()
	if err != nil {
		t.Fatalf("microbenchmark --address: %v\n%s", err, out)
	}
	got := map[string]float64{}
	for _, r := range parseResults(t, string(out)) {
		got[r.Name] = r.Value
	}
	for _, name := range []string{"single_client_tasks_sync", "cross_node_tasks_sync", "cross_node_tasks_async", "cross_node_object_gigabytes", "loopback_tcp_gigabytes"} {
		if got[name] <= 0 {
			t.Fatalf("no %s figure against the cluster: %s", name, out)
		}
	}
	t.Logf("cross-node: tasks sync %.0f/s, async %.0f/s; objects %.2f GB/s against loopback TCP %.2f GB/s",
		got["cross_node_tasks_sync"], got["cross_node_tasks_async"], got["cross_node_object_gigabytes"], got["loopback_tcp_gigabytes"])
}

// rayo job runs programs on the head as drivers of its cluster: their
// output follows, their end is the command's exit code, and they stop on
// request.
func TestJobSubmission(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	work := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(work, "prog"), "./testdata/detached").CombinedOutput(); err != nil {
		t.Fatalf("build driver: %v\n%s", err, out)
	}
	dashPort := freePort(t)
	if out, err := e.cmd("start", "--head", "--token", "guessable").CombinedOutput(); err == nil || !strings.Contains(string(out), "fewer than the 32") {
		t.Fatalf("start with a 9-character token: %v %s", err, out)
	}
	if out, err := e.cmd("start", "--head", "--num-gpus", "1.5").CombinedOutput(); err == nil || !strings.Contains(string(out), "--num-gpus 1.5: want a whole number") {
		t.Fatalf("a fractional --num-gpus: %v\n%s", err, out)
	}
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(freePort(t)), "--num-cpus", "2", "--num-gpus", "2", "--dashboard-port", fmt.Sprint(dashPort))
	e.waitFor(t, 20*time.Second, "head up, with its GPUs", func(st status) bool {
		return count(st, "ALIVE") == 1 && st.Nodes[0].Resources["GPU"] == 2
	})
	job := func(args ...string) (string, error) {
		out, err := e.cmd(append([]string{"job"}, args...)...).CombinedOutput()
		return string(out), err
	}

	checkJobSucceeds(t, e, job, work, dashPort)

	// A failing program fails the command.
	out, err := job("submit", "--", "exit 4")
	if err == nil || !strings.Contains(out, "failed: the entrypoint exited with code 4") {
		t.Fatalf("a failing submission: %v\n%s", err, out)
	}

	// A long one, left running, then stopped: its driver goes, and so do
	// the tasks it had running.
	startLongJob(t, e, job, work)
	checkLongJobStops(t, e, job)

	// Bad input: a clear message and a non-zero exit.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"submit", "--token", "wrong", "--", "true"}, "needs the cluster token"},
		{[]string{"status", "nosuch"}, `no such job submission "nosuch"`},
		{[]string{"submit", "--working-dir", filepath.Join(work, "prog"), "--", "true"}, "is not a folder"},
		{[]string{"submit", "--env", "NOEQUALS", "--", "true"}, "want KEY=VALUE"},
		{[]string{"delete", "nosuch"}, "no such job submission"},
	} {
		if out, err := job(tc.args...); err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("rayo job %v: %v\n%s", tc.args, err, out)
		}
	}
}

// checkJobSucceeds submits the program in work as "first" and checks that
// it runs as a driver whose output follows, that rayo job status and logs
// show it, and that its driver's job record names the submission.
func checkJobSucceeds(t *testing.T, e clusterEnv, job func(args ...string) (string, error), work string, dashPort int) {
	t.Helper()
	// The program, uploaded, runs as a driver: its tasks' output follows.
	out, err := job("submit", "--working-dir", work, "--submission-id", "first", "--", "./prog", "create")
	if err != nil || !regexp.MustCompile(`(?m)^\(double pid=\d+\) doubling 21$`).MatchString(out) ||
		!strings.Contains(out, "count 1") || !strings.Contains(out, "rayo: first succeeded") ||
		!strings.Contains(out, fmt.Sprintf("dashboard http://127.0.0.1:%d\n", dashPort)) { // a joined driver's DashboardURL is its head's
		t.Fatalf("rayo job submit: %v\n%s", err, out)
	}
	if out, err = job("status", "first"); err != nil || !strings.Contains(out, "status: SUCCEEDED") || !strings.Contains(out, "exit_code: 0") {
		t.Fatalf("rayo job status: %v\n%s", err, out)
	}
	if out, err = job("logs", "first"); err != nil || !strings.Contains(out, "count 1") {
		t.Fatalf("rayo job logs: %v\n%s", err, out)
	}
	// Its driver's job record names the submission.
	if table, err := e.cmd("list", "jobs").CombinedOutput(); err != nil || !regexp.MustCompile(`(?m)^[0-9a-f]+\s+SUCCEEDED\s+first\s`).Match(table) {
		t.Fatalf("rayo list jobs: the submitted driver's job is not shown with its submission: %v\n%s", err, table)
	}
	listed, err := e.cmd("list", "jobs", "--filter", "submission_id=first", "--json").CombinedOutput()
	out = string(listed)
	var jobs struct{ Result []map[string]any }
	if err != nil || json.Unmarshal(listed, &jobs) != nil || len(jobs.Result) != 1 || jobs.Result[0]["status"] != "SUCCEEDED" {
		t.Fatalf("rayo list jobs: %v\n%s", err, out)
	}
}

// startLongJob submits the program in work as "long", left running, waits
// for it to get going, and checks that its driver is listed among the
// node's workers.
func startLongJob(t *testing.T, e clusterEnv, job func(args ...string) (string, error), work string) {
	t.Helper()
	if out, err := job("submit", "--no-wait", "--working-dir", work, "--submission-id", "long", "--", "./prog", "busy"); err != nil {
		t.Fatalf("submit --no-wait: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := job("logs", "long")
		if strings.Contains(out, "submitted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the long submission never got going:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond) // polling a program in another process
	}
	// Its driver is listed among the node's workers: a process of the
	// group the head started.
	var st struct{ PID int }
	if out, err := job("status", "long", "--json"); err != nil || json.Unmarshal([]byte(out), &st) != nil || st.PID == 0 {
		t.Fatalf("rayo job status --json: %v\n%s", err, out)
	}
	listed, err := e.cmd("list", "workers", "--filter", "worker_type=DRIVER", "--filter", "state=ALIVE", "--json").CombinedOutput()
	var drivers struct{ Result []struct{ PID int } }
	if err != nil || json.Unmarshal(listed, &drivers) != nil || len(drivers.Result) != 1 || pgidOf(t, drivers.Result[0].PID) != st.PID {
		t.Fatalf("rayo list workers: the submitted driver (in process group %d) is not listed: %v\n%s", st.PID, err, listed)
	}
}

// checkLongJobStops stops the "long" submission and checks that it is
// listed as STOPPED, as is the job its driver ran, and that its tasks end.
func checkLongJobStops(t *testing.T, e clusterEnv, job func(args ...string) (string, error)) {
	t.Helper()
	if out, err := job("stop", "long"); err != nil || !strings.Contains(out, "long stopped on request") {
		t.Fatalf("rayo job stop: %v\n%s", err, out)
	}
	out, err := job("list")
	if err != nil || !regexp.MustCompile(`(?m)^long\s+STOPPED`).MatchString(out) || !regexp.MustCompile(`(?m)^first\s+SUCCEEDED\s+0`).MatchString(out) {
		t.Fatalf("rayo job list: %v\n%s", err, out)
	}
	// The job its driver ran is STOPPED too, with why.
	var jobs struct{ Result []map[string]any }
	deadline := time.Now().Add(10 * time.Second)
	for {
		listed, err := e.cmd("list", "jobs", "--filter", "submission_id=long", "--json").CombinedOutput()
		jobs.Result = nil
		if err == nil && json.Unmarshal(listed, &jobs) == nil && len(jobs.Result) == 1 && jobs.Result[0]["status"] == "STOPPED" &&
			strings.HasPrefix(fmt.Sprint(jobs.Result[0]["message"]), "stopped on request") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rayo list jobs: the stopped submission's job is not STOPPED: %v\n%s", err, listed)
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster
	}
	e.waitFor(t, 10*time.Second, "the stopped driver's tasks to end", func(st status) bool {
		return len(st.Nodes) == 1 && st.Nodes[0].Pending["CPU"] == 0 && st.Nodes[0].Available["CPU"] == 2
	})
}

// pgidOf is the process group of a process, from /proc.
func pgidOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	var pgid int
	if len(f) < 3 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	fmt.Sscan(f[2], &pgid)
	return pgid
}

func TestWithoutSecrets(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"start", "--head", "--token", "s", "--num-cpus", "2"}, []string{"start", "--head", "--num-cpus", "2"}},
		{[]string{"start", "--token=s", "-redis-password", "p", "--port=1"}, []string{"start", "--port=1"}},
		{[]string{"start", "-token=s", "--redis-password=p"}, []string{"start"}},
		{[]string{"start", "--tokens", "x", "--", "--token", "t"}, []string{"start", "--tokens", "x", "--", "--token", "t"}},
	} {
		if got := withoutSecrets(c.in); !slices.Equal(got, c.want) {
			t.Errorf("withoutSecrets(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
