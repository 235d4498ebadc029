package raylet

import (
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/rayletclient"
)

// setLabel writes a worker's label page as the worker would.
func setLabel(t *testing.T, label *os.File, flags byte, name string, key uint64) {
	t.Helper()
	page := make([]byte, rayletclient.LabelSize)
	rayletclient.SetLabelFlags(page, flags)
	rayletclient.PutLabel(page, name, key)
	if _, err := label.WriteAt(page, 0); err != nil {
		t.Fatal(err)
	}
}

// What a dead worker left in its capture pipe is read after the mark of
// the task its label page names; a worker that did not capture gets no
// mark, and an empty pipe gives nothing.
func TestLeftoverIsLabelledWithTheRunningTask(t *testing.T) {
	for _, c := range []struct {
		name   string
		flags  byte
		left   string
		wanted string
	}{
		{"capturing", rayletclient.LabelCapturing, "last words\n", string(rayletclient.AppendTaskMark(nil, "Exiter.Exit", 42)) + "last words\n"},
		{"not capturing", 0, "from a script\n", "from a script\n"},
		{"nothing left", rayletclient.LabelCapturing, "", ""},
		{"no task started", rayletclient.LabelCapturing, "early\n", "early\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := newWorkerFiles()
			if err != nil {
				t.Fatal(err)
			}
			defer f.close()
			if c.name != "no task started" {
				setLabel(t, f.label, c.flags, "Exiter.Exit", 42)
			} else {
				setLabel(t, f.label, c.flags, "", 0)
			}
			if _, err := f.capW.WriteString(c.left); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(&leftover{capR: f.capR, label: f.label})
			if err != nil || string(got) != c.wanted {
				t.Fatalf("leftover: %q, %v; want %q", got, err, c.wanted)
			}
		})
	}
}

// A missing mark means silence only for a worker that captures, runs one
// task at a time, and has dropped no mark the task could have written.
func TestSilentTaskNeedsAMarkThatWouldHaveBeenKept(t *testing.T) {
	f, err := newWorkerFiles()
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	page := f.label
	w := &workerProc{label: page}
	f.label = nil // closed by outputCopied
	if w.silent(7, 100) {
		t.Fatal("a worker that does not capture: a missing mark was taken for silence")
	}
	setLabel(t, page, rayletclient.LabelCapturing, "t", 7)
	if !w.silent(7, 100) {
		t.Fatal("a capturing worker with every mark kept: a missing mark was not silence")
	}
	if w.silent(0, 100) {
		t.Fatal("a task with no key was taken for silent")
	}
	w.markMu.Lock()
	w.evictedAt = 200
	w.markMu.Unlock()
	if w.silent(7, 100) || w.silent(7, 0) {
		t.Fatal("a task that started before the marks kept was taken for silent")
	}
	if !w.silent(7, 300) {
		t.Fatal("a task that started after the marks kept was not taken for silent")
	}
	setLabel(t, page, rayletclient.LabelCapturing|rayletclient.LabelConcurrent, "t", 0)
	if w.silent(7, 300) {
		t.Fatal("a concurrent actor's call was taken for silent")
	}
	// Once the worker's output is copied, the flags are kept.
	w.outputCopied()
	if w.silent(7, 300) {
		t.Fatal("the flags were lost with the page")
	}
}

// A second mark of the attempt just marked (what a dead worker left, for
// the task that printed last) extends its span.
func TestRepeatedMarkExtendsTheSpan(t *testing.T) {
	w := &workerProc{}
	w.markTask(5)
	w.markLine(10)
	w.markTask(5)
	w.markLine(6)
	if lo, hi, last, ok := w.taskSpan(5); !ok || lo != 0 || hi != 16 || !last {
		t.Fatalf("span of the twice-marked task: %d %d %v %v, want 0 16 true true", lo, hi, last, ok)
	}
}

// The raylet sees what waits in a worker's capture pipe, to wait for it
// before a driver ends.
func TestCapturedCountsWaitingBytes(t *testing.T) {
	f, err := newWorkerFiles()
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	// The worker reads its end nonblocking; the raylet's look must not
	// change that mode, which both ends' copies share.
	if err := unix.SetNonblock(int(f.capR.Fd()), true); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{capture: f.capR}
	f.capR = nil // closed by outputCopied
	if n := w.captured(); n != 0 {
		t.Fatalf("an empty capture pipe holds %d bytes", n)
	}
	if _, err := f.capW.WriteString("12345"); err != nil {
		t.Fatal(err)
	}
	if n := w.captured(); n != 5 {
		t.Fatalf("the capture pipe holds %d bytes, want 5", n)
	}
	rc, err := w.capture.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	_ = rc.Control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatal("looking at the capture pipe made it blocking")
	}
	w.outputCopied()
	if n := w.captured(); n != 0 {
		t.Fatalf("a closed capture pipe holds %d bytes", n)
	}
}
