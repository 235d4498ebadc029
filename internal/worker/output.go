package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/rayletclient"
)

// output passes what the worker prints to the raylet, each task's bytes
// after a mark that names the task (see rayletclient.EnvOutput). It marks
// a task only once the task prints: a mark is a write and a wake-up of
// the raylet, a tenth of an empty task's time, for nothing when the task
// is silent. Once a task has run, endTask moves what it printed on to
// the raylet's pipe, before its reply and the next task's mark; a
// driver's end waits for both pipes to empty (the raylet's drainLogs).
type output struct {
	mu      sync.Mutex // held while bytes move, so that a label changes between them
	in      int        // the capture pipe's read end (nonblocking); -1: marks go straight to out
	inFile  *os.File   // in, as forward waits on it
	out     *os.File   // the raylet's pipe
	outFd   int        // out's descriptor, as bytes are spliced to it
	page    []byte     // the label page, shared with the raylet
	name    string     // the label of what comes next
	key     uint64
	labeled bool   // the mark of name and key has gone to out
	moved   bool   // bytes of name and key's have gone to out
	line    []byte // a mark, written at once
}

// captureOutput sets up the capture that spec, the value of
// rayletclient.EnvOutput, describes. Without one, marks go straight to
// stdout before each task, as a worker that cannot capture does.
func captureOutput(spec string) (*output, error) {
	if spec == "" {
		return &output{in: -1, out: os.Stdout, labeled: true}, nil
	}
	fds, err := parseFds(spec)
	if err != nil {
		return nil, err
	}
	rd, wr, label := fds[0], fds[1], fds[2]
	// The raylet's pipe, on a descriptor of its own, before fd 1 moves.
	raylet, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("worker: output: %w", err)
	}
	page, err := unix.Mmap(label, 0, rayletclient.LabelSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Close(raylet)
		return nil, fmt.Errorf("worker: output: label page: %w", err)
	}
	_ = unix.Close(label)
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(wr, fd, 0); err != nil {
			_ = unix.Close(raylet)
			_ = unix.Munmap(page)
			return nil, fmt.Errorf("worker: output: %w", err)
		}
	}
	_ = unix.Close(wr)
	// Processes the tasks start inherit fd 1 and 2, never the read end.
	unix.CloseOnExec(rd)
	if err := unix.SetNonblock(rd, true); err != nil {
		_ = unix.Close(raylet)
		_ = unix.Munmap(page)
		return nil, fmt.Errorf("worker: output: %w", err)
	}
	o := &output{
		in: rd, inFile: os.NewFile(uintptr(rd), "output"), out: os.NewFile(uintptr(raylet), "raylet-log"),
		outFd: raylet, page: page, labeled: true,
	}
	rayletclient.SetLabelFlags(page, rayletclient.LabelCapturing)
	return o, nil
}

// parseFds reads "R,W,L".
func parseFds(spec string) ([3]int, error) {
	var fds [3]int
	parts := strings.Split(spec, ",")
	if len(parts) != len(fds) {
		return fds, fmt.Errorf("worker: bad %s %q", rayletclient.EnvOutput, spec)
	}
	for i, p := range parts {
		fd, err := strconv.Atoi(p)
		if err != nil || fd < 3 {
			return fds, fmt.Errorf("worker: bad %s %q", rayletclient.EnvOutput, spec)
		}
		fds[i] = fd
	}
	return fds, nil
}

// forward passes output on as it comes, for as long as the process runs
// (a worker has no end but its exit).
func (o *output) forward() {
	if o == nil || o.in < 0 {
		return
	}
	rc, err := o.inFile.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(uintptr) bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.drainLocked(true)
	})
}

// drainLocked moves what the capture pipe holds to the raylet's pipe,
// after the label's mark; with checkEnd, it reports whether the pipe has
// ended (no writer is left, or it failed). The bytes move in the kernel
// (splice), never through this process: a task that prints and then ends
// the process (os.Exit) at once would lose what a read had taken and a
// write not yet passed on. It moves only what the pipe says it holds: its
// read end's mode is shared with the raylet's copy, and a wait for input
// here would hold o.mu.
func (o *output) drainLocked(checkEnd bool) bool {
	for {
		n, err := unix.IoctlGetInt(o.in, unix.TIOCINQ)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return true
		}
		if n == 0 {
			return checkEnd && o.hungUp()
		}
		o.emitLocked()
		m, err := unix.Splice(o.in, nil, o.outFd, nil, n, unix.SPLICE_F_MOVE)
		o.moved = o.moved || m > 0
		switch {
		case err == nil, errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			// The raylet's pipe is full (the read end's mode makes the
			// splice nonblocking): wait until it takes more.
			fds := []unix.PollFd{{Fd: int32(o.outFd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(fds, -1)
		default:
			return true
		}
	}
}

// hungUp says whether no writer of the capture pipe is left.
func (o *output) hungUp() bool {
	fds := []unix.PollFd{{Fd: int32(o.in), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 1 && fds[0].Revents&unix.POLLHUP != 0
}

// emitLocked writes the label's mark to the raylet's pipe, if it has not
// gone yet.
func (o *output) emitLocked() {
	if o.labeled {
		return
	}
	o.line = rayletclient.AppendTaskMark(o.line[:0], o.name, o.key)
	o.labeled = true
	_, _ = o.out.Write(o.line)
}

// startTask labels what comes next as the task's: the attempt key, or 0
// for a call of a concurrent actor, whose lines are found by time. eager
// marks it at once, printed or not.
func (o *output) startTask(name string, key uint64, eager bool) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if key != o.key || name != o.name {
		o.name, o.key, o.labeled, o.moved = name, key, false, false
		if o.page != nil {
			rayletclient.PutLabel(o.page, name, key)
		}
	}
	if eager || o.in < 0 {
		o.emitLocked()
	}
}

// endTask moves what the task printed on to the raylet's pipe, so that
// the next task's mark comes after it: one look at an empty pipe when it
// printed nothing. It reports whether the task printed: its reply then
// waits until the lines have been shown (Worker.flushOutput). Calls of a
// concurrent actor, whose lines are found by time, skip it; the raylet
// waits for their capture pipe to empty before a job's driver ends
// (drainLogs).
func (o *output) endTask() (printed bool) {
	if o == nil || o.in < 0 {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.key == 0 {
		return false
	}
	o.drainLocked(false)
	return o.moved
}

// setConcurrent tells the raylet that calls run at once from now on.
func (o *output) setConcurrent() {
	if o == nil || o.page == nil {
		return
	}
	o.mu.Lock()
	rayletclient.SetLabelFlags(o.page, rayletclient.LabelConcurrent)
	o.mu.Unlock()
}
