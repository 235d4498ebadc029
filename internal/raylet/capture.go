package raylet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/rayletclient"
)

// A Go worker captures its own output and marks a task only once it
// prints (see rayletclient.EnvOutput). The raylet makes the capture pipe
// and the label page, and keeps the pipe's read end: what a worker leaves
// in it when it dies (the last lines before an os.Exit, a crash's trace)
// is read once it is gone, labelled with the task the page names.

// captureSize is the capture pipe's size, asked of the kernel: a crash
// trace up to it never blocks the dying worker.
const captureSize = 1 << 20

// maxLeftover bounds what is read from a dead worker's capture pipe: a
// process it started may still hold the pipe, and write on.
const maxLeftover = 4 << 20

// workerFiles are the files a worker starts with, besides its store: its
// output pipe and the capture pipe and label page.
type workerFiles struct {
	log        *logPipe
	logW       *os.File // the worker's stdout and stderr
	capR, capW *os.File
	label      *os.File
}

// newWorkerFiles makes a worker's output pipe, capture pipe and label
// page.
func newWorkerFiles() (*workerFiles, error) {
	f := &workerFiles{}
	var err error
	if f.log, f.logW, err = newLogPipe(); err != nil {
		return nil, err
	}
	if f.capR, f.capW, err = os.Pipe(); err != nil {
		f.close()
		return nil, fmt.Errorf("raylet: capture pipe: %w", err)
	}
	// Best effort: a smaller pipe only makes a long crash trace wait for
	// the worker's own reader, which a crash has stopped.
	_, _ = unix.FcntlInt(f.capW.Fd(), unix.F_SETPIPE_SZ, captureSize)
	fd, err := unix.MemfdCreate("rayo-label", unix.MFD_CLOEXEC)
	if err != nil {
		f.close()
		return nil, fmt.Errorf("raylet: label page: %w", err)
	}
	f.label = os.NewFile(uintptr(fd), "rayo-label")
	if err := unix.Ftruncate(fd, rayletclient.LabelSize); err != nil {
		f.close()
		return nil, fmt.Errorf("raylet: label page: %w", err)
	}
	return f, nil
}

// setUp gives cmd the files, store at fd 3 and the capture files after
// it, and says where they are in its environment.
func (f *workerFiles) setUp(cmd *exec.Cmd, store *os.File) {
	cmd.Stdout, cmd.Stderr = f.logW, f.logW
	cmd.ExtraFiles = []*os.File{store, f.capR, f.capW, f.label} // fds 3 to 6
	cmd.Env = append(cmd.Env, rayletclient.EnvOutput+"=4,5,6")
}

// started closes the ends only the worker uses.
func (f *workerFiles) started() {
	_ = f.logW.Close()
	_ = f.capW.Close()
}

// close closes them all (a worker that could not start).
func (f *workerFiles) close() {
	if f.log != nil {
		_ = f.log.Close()
	}
	for _, c := range []*os.File{f.logW, f.capR, f.capW, f.label} {
		_ = c.Close() // a nil file refuses, harmlessly
	}
}

// heldFD is a descriptor the raylet keeps for a worker's life, bare: an
// *os.File for each of a worker's capture pipe and label page was a sixth
// of a KiB of the node's heap, per worker. The zero value holds none.
type heldFD struct{ fdPlus1 int32 }

// hold takes f's descriptor (a close-on-exec duplicate, made without
// changing the blocking mode that the worker's copy shares) and closes f.
// On error it holds none.
func hold(f *os.File) heldFD {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return heldFD{}
	}
	dup := -1
	if rc.Control(func(fd uintptr) { dup, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }) != nil || dup < 0 {
		return heldFD{}
	}
	return heldFD{int32(dup + 1)}
}

// fd is the descriptor, if one is held.
func (h heldFD) fd() (int, bool) { return int(h.fdPlus1) - 1, h.fdPlus1 != 0 }

// close closes the descriptor, if one is held, and holds none.
func (h *heldFD) close() {
	if fd, ok := h.fd(); ok {
		_ = unix.Close(fd)
	}
	h.fdPlus1 = 0
}

// keep moves f's capture pipe's read end and label page into w, for its
// life (until outputCopied).
func (w *workerProc) keep(f *workerFiles) {
	w.markMu.Lock()
	defer w.markMu.Unlock()
	w.label, w.capture = hold(f.label), hold(f.capR)
	f.label, f.capR = nil, nil
}

// leftover reads, once the worker has closed its output (it is gone),
// what it left in its capture pipe, after the mark of the task its label
// page names.
type leftover struct {
	w     *workerProc
	rest  []byte
	taken bool
}

func (l *leftover) Read(b []byte) (int, error) {
	if !l.taken {
		l.taken = true
		l.rest = l.w.leftover()
	}
	if len(l.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(b, l.rest)
	l.rest = l.rest[n:]
	return n, nil
}

// leftover reads what w left in its capture pipe (maxLeftover at most),
// after the mark of the task its label page names.
func (w *workerProc) leftover() []byte {
	w.markMu.Lock()
	defer w.markMu.Unlock()
	fd, ok := w.capture.fd()
	if !ok || unix.SetNonblock(fd, true) != nil {
		return nil
	}
	var data []byte
	buf := make([]byte, 64<<10)
	for len(data) < maxLeftover {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			data = append(data, buf[:n]...)
			continue
		}
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if len(data) == 0 {
		return nil
	}
	flags, name, key := readLabel(w.label)
	if flags&rayletclient.LabelCapturing == 0 || name == "" {
		return data // no task had started: the lines go as the worker's
	}
	return append(rayletclient.AppendTaskMark(nil, name, key), data...)
}

// readLabel reads a worker's label page (nothing if none is held).
func readLabel(label heldFD) (flags byte, name string, key uint64) {
	fd, ok := label.fd()
	if !ok {
		return 0, "", 0
	}
	page := make([]byte, rayletclient.LabelSize)
	n, err := unix.Pread(fd, page, 0)
	if err != nil || n < 0 {
		n = 0
	}
	return rayletclient.ReadLabel(page[:n])
}
