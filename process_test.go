package rayo

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var hello = Func1(func(s string) int {
	fmt.Println("hello from", s)
	return os.Getpid()
}, Name("hello"))

// childDriver is a driver process started by the tests below: it runs a
// task that prints, reports its workers, and then waits to be killed.
func childDriver() {
	logs := os.Getenv("RAYO_TEST_LOGS") != "off"
	if err := Init(NumCPUs(2), LogToDriver(logs)); err != nil {
		fmt.Println("init:", err)
		os.Exit(1)
	}
	pid, err := Get(context.Background(), hello.Remote(V("a task")))
	if err != nil {
		fmt.Println("get:", err)
		os.Exit(1)
	}
	fmt.Printf("task-pid %d\n", pid)
	fmt.Printf("workers %s\n", strings.Trim(fmt.Sprint(localRaylet().WorkerPIDs()), "[]"))
	fmt.Printf("session %s\n", SessionDir())
	select {}
}

// child is a driver process under test and the lines it printed.
type child struct {
	cmd   *exec.Cmd
	facts map[string]string
	lines chan string
	seen  []string
}

func startChild(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "RAYO_TEST_CHILD_DRIVER=1")...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := &child{cmd: cmd, facts: map[string]string{}, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	for c.facts["session"] == "" {
		line, ok := c.next(t)
		if !ok {
			t.Fatalf("child driver ended early; it said %q", c.seen)
		}
		if k, v, ok := strings.Cut(line, " "); ok && (k == "task-pid" || k == "workers" || k == "session") {
			c.facts[k] = v
		}
	}
	return c
}

func (c *child) next(t *testing.T) (string, bool) {
	select {
	case line, ok := <-c.lines:
		if ok {
			c.seen = append(c.seen, line)
		}
		return line, ok
	case <-time.After(20 * time.Second):
		t.Fatalf("child driver silent; it said %q", c.seen)
		return "", false
	}
}

// waitLine reads the child's output until it prints want.
func (c *child) waitLine(t *testing.T, want string) {
	t.Helper()
	for _, l := range c.seen {
		if l == want {
			return
		}
	}
	for {
		line, ok := c.next(t)
		if !ok {
			t.Fatalf("want line %q, child said %q", want, c.seen)
		}
		if line == want {
			return
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) is dead but not yet reaped by its parent.
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

func TestWorkerOutputReachesDriver(t *testing.T) {
	c := startChild(t)
	facts := c.facts
	c.waitLine(t, fmt.Sprintf("(hello pid=%s) hello from a task", facts["task-pid"]))
	waitForLog(t, fmt.Sprintf("%s/logs/worker-%s.log", facts["session"], facts["task-pid"]), "hello from a task")
}

func TestLogToDriverOff(t *testing.T) {
	c := startChild(t, "RAYO_TEST_LOGS=off")
	facts := c.facts
	waitForLog(t, fmt.Sprintf("%s/logs/worker-%s.log", facts["session"], facts["task-pid"]), "hello from a task")
	// The line is in the log, so the raylet has handled it: a driver copy,
	// had there been one, was written before. Stop the driver and read all.
	_ = c.cmd.Process.Kill()
	for {
		line, ok := c.next(t)
		if !ok {
			break
		}
		if strings.Contains(line, "hello from") {
			t.Fatalf("LogToDriver(false) still printed %q", line)
		}
	}
}

func TestWorkersExitWhenDriverIsKilled(t *testing.T) {
	c := startChild(t)
	cmd, facts := c.cmd, c.facts
	var pids []int
	for _, f := range strings.Fields(facts["workers"]) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		t.Fatal("no workers reported")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d outlived its driver", pid)
			}
			time.Sleep(10 * time.Millisecond) // polling another process's exit
		}
	}
}

// waitForLog waits until the file holds want: the raylet copies worker
// output to the log asynchronously.
func waitForLog(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s: want %q, have %q (%v)", path, want, b, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a file another process writes
	}
}
