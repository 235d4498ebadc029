// Package examples_test builds every example program and runs it, checking
// what it prints and that it leaves no worker process or shared-memory
// store behind.
package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const module = "github.com/rayo-dev/rayo/examples/"

// example is one program under examples/ and what its run must show.
type example struct {
	name string
	// want are exact lines of standard output, in this order (other lines
	// may come between them).
	want []string
	// check, if set, looks at the output further; pid is the example's.
	check func(t *testing.T, lines []string, pid int)
}

var examples = []example{
	{name: "putget", want: []string{"[1 2 3]", "example", "[0 1 2 3 4 5 6 7 8 9]"}},
	{name: "remote", want: []string{"3", "3", "3", "3"}, check: func(t *testing.T, lines []string, _ int) {
		if n := count(lines, "3"); n != 4 {
			t.Errorf("%d lines say 3, want 4 (one per mix of values and refs)", n)
		}
	}},
	{name: "parallel", check: func(t *testing.T, lines []string, _ int) {
		serial, parallel := seconds(t, lines, "serial"), seconds(t, lines, "parallel")
		if serial < 10 {
			t.Errorf("ten one-second sleeps took %.2fs as plain calls, want at least 10s", serial)
		}
		if parallel < 1 || parallel >= 3 {
			t.Errorf("ten one-second sleeps took %.2fs as tasks on ten CPUs, want 1s to 3s", parallel)
		}
	}},
	{name: "chain", want: []string{"3"}},
	{name: "treereduce", want: []string{"matches direct sum: true"}, check: func(t *testing.T, lines []string, _ int) {
		matchLine(t, lines, `^sum: -?\d+\.\d{3}$`)
	}},
	{name: "nested", want: []string{"[45 55 65 75 85]"}},
	{name: "multireturn", want: []string{"1 2 3"}},
	{name: "graph", want: []string{"10 independent zeros tasks, each 100x100", "shape: 10x10 sum: 0"}},
	{name: "wait", want: waitOrder, check: func(t *testing.T, lines []string, _ int) {
		var got []string
		for _, l := range lines {
			if strings.HasPrefix(l, "finished: ") {
				got = append(got, l)
			}
		}
		if strings.Join(got, "\n") != strings.Join(waitOrder, "\n") {
			t.Errorf("tasks finished in the order\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(waitOrder, "\n\t"))
		}
	}},
	{name: "sumsquares", want: []string{sumSquaresLocal, sumSquaresRemote}, check: func(t *testing.T, lines []string, pid int) {
		if n := count(lines, sumSquaresLocal); n != runtime.NumCPU() {
			t.Errorf("%d local values, want one per core (%d)", n, runtime.NumCPU())
		}
		if n := count(lines, sumSquaresRemote); n != runtime.NumCPU() {
			t.Errorf("%d remote values, want one per core (%d)", n, runtime.NumCPU())
		}
		matchLine(t, lines, `^time elapsed for local calls: \d+\.\d\ds$`)
		matchLine(t, lines, `^time elapsed for remote tasks: \d+\.\d\ds$`)
		checkWorkerLines(t, lines, pid, runtime.NumCPU())
	}},
	{name: "counter", want: counterWant},
	{name: "dashboard", want: observeWant, check: func(t *testing.T, lines []string, _ int) {
		matchLine(t, lines, `^cluster CPUs: 2$`)
	}},
	{name: "goals", want: goalsWant, check: func(t *testing.T, lines []string, _ int) {
		matchInOrder(t, lines, goalsPatterns...)
	}},
	{name: "tour", want: tourWant(), check: func(t *testing.T, lines []string, pid int) {
		serial, parallel := seconds(t, lines, "serial"), seconds(t, lines, "parallel")
		if serial < 2 || parallel >= 1.5 {
			t.Errorf("four half-second sleeps: %.2fs serially and %.2fs as tasks, want at least 2s and under 1.5s", serial, parallel)
		}
		matchLine(t, lines, `^sum: -?\d+\.\d{3}$`)
		checkWorkerLines(t, lines, pid, 1)
		matchInOrder(t, lines, append([]string{`^== goals scored ==$`}, goalsPatterns...)...)
	}},
}

// observeWant are the fixed lines of the dashboard example (the cluster's
// CPUs differ between it and the tour).
var observeWant = []string{"sum of squares: 285", "square tasks finished: 10", "Tally actors alive: 1", "square tasks on the timeline: 10"}

// counterWant is what the counter example prints: ten counters
// incremented once, then the first one five more times.
var counterWant = []string{"[1 1 1 1 1 1 1 1 1 1]", "[2 3 4 5 6]"}

// goalsWant are the fixed lines of the goals example: the named actor is
// killed, a later call fails with ErrActorDied, and its name is free.
var goalsWant = []string{`killed "scoreboard"`, "actor is dead: true", `"scoreboard" is no longer found by name`}

// goalsPatterns match, in order, the goals example's lines that hold ids,
// random scores and error text.
var goalsPatterns = []string{
	`^Actor\[\*demos\.GoalsScored\]\([0-9a-f]+\)$`,
	`^Ref\[int\]\([0-9a-f]+\)$`,
	`^Total goals scored: [1-5]$`,
	`^found "scoreboard": Actor\[\*demos\.GoalsScored\]\([0-9a-f]+\) \(same actor: true\)$`,
	`^scoreboard: Total goals scored: [1-5]$`,
	`^killed "scoreboard"$`,
	`^score after Kill: .*GoalsScored\.Score.*killed`,
	`^actor is dead: true$`,
}

var waitOrder = []string{
	"finished: task 3 (0ms)",
	"finished: task 1 (200ms)",
	"finished: task 2 (400ms)",
	"finished: task 0 (600ms)",
}

// sqrt(sum of x*x for x in [1, 10,000,000)), as the seed prints it.
const (
	sumSquaresLocal  = "local return value: 18257417214.20"
	sumSquaresRemote = "remote task returned value: 18257417214.20"
)

// tourWant is every section heading of the tour, in order, each followed
// by the lines its standalone example must print.
func tourWant() []string {
	var want []string
	add := func(heading string, lines ...string) {
		want = append(want, "== "+heading+" ==")
		want = append(want, lines...)
	}
	add("put and get", "[1 2 3]", "example", "[0 1 2 3 4 5 6 7 8 9]")
	add("remote functions", "3", "3", "3", "3")
	add("parallelism")
	add("dependencies", "3")
	add("tree reduce", "matches direct sum: true")
	add("remote functions within remote functions", "[45 55 65 75 85]")
	add("multiple results", "1 2 3")
	add("computation graph", "shape: 10x10 sum: 0")
	add("wait", waitOrder...)
	add("sum of squares", sumSquaresLocal, sumSquaresRemote)
	add("actors", counterWant...)
	add("goals scored", goalsWant...)
	add("see what runs where", observeWant...)
	return want
}

func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every example (about a minute)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH:", err)
	}
	bins := buildAll(t, goTool)
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			out, pid := runExample(t, bins[ex.name])
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if missing := inOrder(lines, ex.want); missing != "" {
				t.Errorf("output lacks the line %q (in its place among %q); output:\n%s", missing, ex.want, out)
			}
			if ex.check != nil {
				ex.check(t, lines, pid)
				if t.Failed() {
					t.Logf("output:\n%s", out)
				}
			}
		})
	}
}

// buildAll builds every example, each once, into a temporary folder with
// one go build command, and returns the binaries by example name.
func buildAll(t *testing.T, goTool string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	bins := make(map[string]string, len(examples))
	for _, ex := range examples {
		args = append(args, module+ex.name)
		bins[ex.name] = filepath.Join(dir, ex.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, goTool, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built %d examples in %v", len(examples), time.Since(start).Round(time.Millisecond))
	return bins
}

// runExample runs bin to completion and returns its standard output and
// pid. It fails the test if the run fails, or if a worker process or the
// shared-memory store of the run outlives it.
func runExample(t *testing.T, bin string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Workers inherit the example's process group. On a timeout, SIGQUIT
	// makes the driver and its workers print their goroutines (the
	// workers' go to their logs) and exit; the group is killed after.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second

	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	err := cmd.Wait()
	t.Logf("%s ran in %v", filepath.Base(bin), time.Since(start).Round(time.Millisecond))
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		t.Fatalf("%s: %v (context: %v)\nstdout:\n%s\nstderr:\n%s%s", bin, err, ctx.Err(), &stdout, &stderr, workerLogs(pid))
	}
	if stderr.Len() > 0 {
		t.Logf("stderr:\n%s", &stderr)
	}

	if left := processesOf(bin); len(left) > 0 {
		t.Errorf("processes of %s still running after it exited: %v", bin, left)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still has members after the example exited (kill: %v)", pid, err)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return stdout.String(), pid
}

// workerLogs returns the non-empty worker logs of the cluster the driver
// pid started, each trimmed to its last lines.
func workerLogs(pid int) string {
	logs, _ := filepath.Glob(filepath.Join(os.TempDir(), "rayo", fmt.Sprintf("s-%d-*", pid), "logs", "*.log"))
	var b strings.Builder
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 200 {
			lines = lines[len(lines)-200:]
		}
		fmt.Fprintf(&b, "\n--- %s:\n%s", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// processesOf lists the pids of running processes of the executable bin.
func processesOf(bin string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if exe == bin || strings.TrimSuffix(exe, " (deleted)") == bin || string(argv0) == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// inOrder returns the first of want not found in lines after the ones
// before it, or "" if lines hold them all in order.
func inOrder(lines, want []string) string {
	i := 0
	for _, w := range want {
		for i < len(lines) && lines[i] != w {
			i++
		}
		if i == len(lines) {
			return w
		}
		i++
	}
	return ""
}

func count(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}

// matchLine returns the submatches of the first line matching expr.
func matchLine(t *testing.T, lines []string, expr string) []string {
	t.Helper()
	re := regexp.MustCompile(expr)
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	t.Errorf("no line matches %s", expr)
	return nil
}

// matchInOrder checks that lines hold a match of each of exprs, each on a
// line after the match of the one before it.
func matchInOrder(t *testing.T, lines []string, exprs ...string) {
	t.Helper()
	i := 0
	for k, expr := range exprs {
		re := regexp.MustCompile(expr)
		for i < len(lines) && !re.MatchString(lines[i]) {
			i++
		}
		if i == len(lines) {
			t.Errorf("no line matches %s after the lines matching %q", expr, exprs[:k])
			return
		}
		i++
	}
}

// seconds reads a "label: 1.23s" timing line.
func seconds(t *testing.T, lines []string, label string) float64 {
	t.Helper()
	m := matchLine(t, lines, `^`+regexp.QuoteMeta(label)+`: (\d+\.\d\d)s$`)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkWorkerLines checks that at least min sum-of-squares tasks printed
// "pid=P; ppid=Q" from a worker: each line shown by the driver with the
// "(task pid=P) " prefix, from a child of the driver.
func checkWorkerLines(t *testing.T, lines []string, driverPID, min int) {
	t.Helper()
	re := regexp.MustCompile(`^\((\S+) pid=(\d+)\) pid=(\d+); ppid=(\d+)$`)
	n := 0
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n++
		if m[2] != m[3] {
			t.Errorf("line %q: prefix and task disagree on the pid", l)
		}
		if m[2] == strconv.Itoa(driverPID) {
			t.Errorf("line %q: the task ran in the driver", l)
		}
		if m[4] != strconv.Itoa(driverPID) {
			t.Errorf("line %q: the worker's parent is not the driver (pid %d)", l, driverPID)
		}
	}
	if n < min {
		t.Errorf("%d worker lines of the form \"(task pid=N) pid=N; ppid=M\", want at least %d", n, min)
	}
}
