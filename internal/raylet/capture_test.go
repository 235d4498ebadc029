package raylet

import (
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/rayletclient"
)

// setLabel writes a worker's label page as the worker would.
func setLabel(t *testing.T, label heldFD, flags byte, name string, key uint64) {
	t.Helper()
	page := make([]byte, rayletclient.LabelSize)
	rayletclient.SetLabelFlags(page, flags)
	rayletclient.PutLabel(page, name, key)
	fd, ok := label.fd()
	if !ok {
		t.Fatal("no label page held")
	}
	if _, err := unix.Pwrite(fd, page, 0); err != nil {
		t.Fatal(err)
	}
}

// keptFiles makes a worker's files and a record that keeps its capture
// pipe and label page, as a started worker's does.
func keptFiles(t *testing.T) (*workerFiles, *workerProc) {
	t.Helper()
	f, err := newWorkerFiles()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	w := &workerProc{}
	w.keep(f)
	t.Cleanup(w.outputCopied)
	if _, ok := w.label.fd(); !ok {
		t.Fatal("the label page was not kept")
	}
	if _, ok := w.capture.fd(); !ok {
		t.Fatal("the capture pipe was not kept")
	}
	return f, w
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
			f, w := keptFiles(t)
			if c.name != "no task started" {
				setLabel(t, w.label, c.flags, "Exiter.Exit", 42)
			} else {
				setLabel(t, w.label, c.flags, "", 0)
			}
			if _, err := f.capW.WriteString(c.left); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(&leftover{w: w})
			if err != nil || string(got) != c.wanted {
				t.Fatalf("leftover: %q, %v; want %q", got, err, c.wanted)
			}
		})
	}
}

// A missing mark means silence only for a worker that captures, runs one
// task at a time, and has dropped no mark the task could have written.
func TestSilentTaskNeedsAMarkThatWouldHaveBeenKept(t *testing.T) {
	_, w := keptFiles(t)
	page := w.label
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
	// The worker reads its end nonblocking; the raylet's keeping it, and
	// its looks, must not change that mode, which both ends' copies share.
	if err := unix.SetNonblock(int(f.capR.Fd()), true); err != nil {
		t.Fatal(err)
	}
	w := &workerProc{}
	w.keep(f)
	if n := w.captured(); n != 0 {
		t.Fatalf("an empty capture pipe holds %d bytes", n)
	}
	if _, err := f.capW.WriteString("12345"); err != nil {
		t.Fatal(err)
	}
	if n := w.captured(); n != 5 {
		t.Fatalf("the capture pipe holds %d bytes, want 5", n)
	}
	fd, ok := w.capture.fd()
	if !ok {
		t.Fatal("the capture pipe was not kept")
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || flags&unix.O_NONBLOCK == 0 {
		t.Fatalf("keeping or looking at the capture pipe made it blocking (flags %#x, %v)", flags, err)
	}
	w.outputCopied()
	if n := w.captured(); n != 0 {
		t.Fatalf("a closed capture pipe holds %d bytes", n)
	}
	if _, ok := w.capture.fd(); ok {
		t.Fatal("outputCopied left the capture pipe held")
	}
}
