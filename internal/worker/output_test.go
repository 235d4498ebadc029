package worker

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/rayletclient"
)

// testOutput is an output whose capture pipe and raylet pipe are pipes of
// the test's: it writes what a task prints to print, and reads what the
// raylet would from raylet (nonblocking).
func testOutput(t *testing.T) (o *output, print *os.File, raylet int) {
	t.Helper()
	var capture [2]int
	if err := unix.Pipe2(capture[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	// Nonblocking, the read end is in the network poller, as a worker's.
	cr, cw := os.NewFile(uintptr(capture[0]), "capture"), os.NewFile(uintptr(capture[1]), "print")
	lr, lw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range []*os.File{cr, cw, lr, lw} {
			_ = f.Close()
		}
	})
	o = &output{in: capture[0], inFile: cr, out: lw, outFd: int(lw.Fd()), page: make([]byte, rayletclient.LabelSize), labeled: true}
	fd := int(lr.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	return o, cw, fd
}

// taken is what the raylet's pipe holds now.
func taken(t *testing.T, fd int) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			got = append(got, buf[:n]...)
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return string(got)
		}
		t.Fatalf("read: %v", err)
	}
}

// A task that prints is marked before its first bytes, one that prints
// nothing is not marked at all, and what a task printed is on the
// raylet's pipe once it ends.
func TestOutputMarksOnlyTasksThatPrint(t *testing.T) {
	o, print, raylet := testOutput(t)
	tasks := []struct {
		name  string
		key   uint64
		print string
	}{{"first", 11, "one\n"}, {"silent", 12, ""}, {"third", 13, "three, "}, {"fourth", 14, "four\n"}}
	for _, task := range tasks {
		o.startTask(task.name, task.key, false)
		if task.print != "" {
			if _, err := print.WriteString(task.print); err != nil {
				t.Fatal(err)
			}
		}
		if printed := o.endTask(); printed != (task.print != "") {
			t.Fatalf("after %s: endTask says printed %v", task.name, printed)
		}
		want := ""
		if task.print != "" {
			want = string(rayletclient.AppendTaskMark(nil, task.name, task.key)) + task.print
		}
		if got := taken(t, raylet); got != want {
			t.Fatalf("after %s: the raylet's pipe holds %q, want %q", task.name, got, want)
		}
		if _, name, key := rayletclient.ReadLabel(o.page); name != task.name || key != task.key {
			t.Fatalf("the label page names %q %d during %s", name, key, task.name)
		}
	}
	// A concurrent actor's call (no key) leaves what it printed to the
	// forwarder: its lines are found by time, and the raylet waits for the
	// capture pipe to empty before a driver ends.
	o.startTask("Method", 0, false)
	if _, err := print.WriteString("at once\n"); err != nil {
		t.Fatal(err)
	}
	if o.endTask() {
		t.Fatal("a concurrent call's end waits for its lines to be shown")
	}
	if got := taken(t, raylet); got != "" {
		t.Fatalf("a concurrent call's end moved %q", got)
	}
	o.mu.Lock()
	o.drainLocked(false)
	o.mu.Unlock()
	if got, want := taken(t, raylet), string(rayletclient.AppendTaskMark(nil, "Method", 0))+"at once\n"; got != want {
		t.Fatalf("the forwarder moved %q, want %q", got, want)
	}
	// A mark once asked for goes at once, and once only.
	o.startTask("ctor", 15, true)
	o.startTask("ctor", 15, true)
	if got, want := taken(t, raylet), string(rayletclient.AppendTaskMark(nil, "ctor", 15)); got != want {
		t.Fatalf("an eager mark: %q, want %q", got, want)
	}
	if o.endTask() {
		t.Fatal("a silent task marked at once counts as printed")
	}
}

// What a long task prints goes on while it runs, not only at its end.
func TestOutputForwardsWhileATaskRuns(t *testing.T) {
	o, print, raylet := testOutput(t)
	done := make(chan struct{})
	go func() {
		o.forward()
		close(done)
	}()
	o.startTask("long", 21, false)
	if _, err := print.WriteString("progress\n"); err != nil {
		t.Fatal(err)
	}
	want := string(rayletclient.AppendTaskMark(nil, "long", 21)) + "progress\n"
	var got string
	for deadline := time.Now().Add(10 * time.Second); got != want; {
		got += taken(t, raylet)
		if time.Now().After(deadline) {
			t.Fatalf("the raylet's pipe holds %q while the task runs, want %q", got, want)
		}
		time.Sleep(time.Millisecond) // the forwarder runs on its own
	}
	_ = print.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarder went on after the capture pipe ended")
	}
}

func TestParseOutputFds(t *testing.T) {
	if fds, err := parseFds("4,5,6"); err != nil || fds != [3]int{4, 5, 6} {
		t.Fatalf("4,5,6: %v %v", fds, err)
	}
	for _, bad := range []string{"", "4,5", "4,5,x", "1,5,6", "4,5,6,7"} {
		if _, err := parseFds(bad); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
}

// The capture pipe's read end shares its mode with the raylet's copy: a
// task's end reads only what the pipe holds, and never waits, even when
// the pipe has been made blocking.
func TestOutputNeverWaitsOnABlockingPipe(t *testing.T) {
	o, print, raylet := testOutput(t)
	if err := unix.SetNonblock(o.in, false); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		o.startTask("quiet", 31, false)
		o.endTask()
		o.startTask("loud", 32, false)
		_, _ = print.WriteString("loud\n")
		o.endTask()
		done <- taken(t, raylet)
	}()
	select {
	case got := <-done:
		if want := string(rayletclient.AppendTaskMark(nil, "loud", 32)) + "loud\n"; got != want {
			t.Fatalf("the raylet's pipe holds %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a task's end waited on a blocking capture pipe")
	}
}

// envOutputChild makes the test binary the printing worker of
// TestOutputKeepsWhatATaskPrintedBeforeExit.
const envOutputChild = "RAYO_TEST_OUTPUT_CHILD"

// A worker whose task prints and then ends the process at once loses none
// of what was printed: what the forwarder had not passed on yet is still
// in the capture pipe, for the raylet to read after the death, never half
// taken. A child process captures its output as a worker does, into a
// raylet's pipe of one page that nobody reads until the child is gone, so
// that the forwarder is stuck passing on what it was given; it prints
// numbered lines, then exits. The lines on the raylet's pipe, then those
// left in the capture pipe, must run without a gap.
func TestOutputKeepsWhatATaskPrintedBeforeExit(t *testing.T) {
	if os.Getenv(envOutputChild) != "" {
		printThenExit()
		return
	}
	for _, n := range []int{1000, 3000} {
		lines := outputChildRound(t, n)
		for i, l := range lines {
			if l != fmt.Sprintf("line %06d", i) {
				t.Fatalf("%d lines printed: line %d of %d found is %q: the lines before it were lost", n, i, len(lines), l)
			}
		}
		if len(lines) != n {
			t.Fatalf("%d lines found, want the %d printed", len(lines), n)
		}
	}
}

// outputChildRound runs the child once, printing n lines, and returns the
// lines it printed as the raylet would find them: on its pipe, then left
// in the capture pipe.
func outputChildRound(t *testing.T, n int) []string {
	t.Helper()
	capR, capW, err := os.Pipe() // as the raylet makes it: the child writes to it blocking
	if err != nil {
		t.Fatal(err)
	}
	defer capR.Close()
	label, err := unix.MemfdCreate("label", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	labelF := os.NewFile(uintptr(label), "label")
	defer labelF.Close()
	if err := labelF.Truncate(rayletclient.LabelSize); err != nil {
		t.Fatal(err)
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer logR.Close()
	if _, err := unix.FcntlInt(logW.Fd(), unix.F_SETPIPE_SZ, os.Getpagesize()); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutputKeepsWhatATaskPrintedBeforeExit$")
	cmd.Env = append(os.Environ(), envOutputChild+"="+strconv.Itoa(n), rayletclient.EnvOutput+"=3,4,5")
	cmd.Stdout, cmd.ExtraFiles = logW, []*os.File{capR, capW, labelF}
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v", err)
	}
	_ = logW.Close()
	_ = capW.Close()
	forwarded, err := io.ReadAll(logR)
	if err != nil {
		t.Fatal(err)
	}
	left, err := io.ReadAll(capR)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(forwarded)+string(left), "\n") {
		if strings.HasPrefix(l, "line ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// printThenExit is the child: a worker's capture, and a task that prints
// numbered lines, then ends the process.
func printThenExit() {
	n, _ := strconv.Atoi(os.Getenv(envOutputChild))
	o, err := captureOutput(os.Getenv(rayletclient.EnvOutput))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	go o.forward()
	o.startTask("printer", 1, false)
	for i := range n {
		fmt.Printf("line %06d\n", i)
	}
	os.Exit(0)
}
