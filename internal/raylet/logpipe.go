package raylet

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A worker's output comes through a pipe that this process reads by
// polling, outside the Go network poller. A worker writes a line of its
// own (a mark) as each task starts, so that its log holds each task's
// lines exactly; a pipe in the network poller woke this process for every
// mark, which cost a busy worker's tasks about a tenth of their time (an
// empty task's, on one CPU). Polled every logPace while output comes, and
// less often as it stops (up to maxLogPause), the marks of a busy worker
// are read in hundreds, and its output is shown logPace later at most
// (maxLogPause after a silence).
const (
	logPace     = 2 * time.Millisecond
	maxLogPause = 100 * time.Millisecond
)

// logPipe is the read end of a worker's output pipe.
type logPipe struct {
	fd     int
	exited <-chan struct{} // closed once the worker has exited
	wake   chan struct{}   // a read wanted now (drainLogs)
	pause  time.Duration
	timer  *time.Timer

	mu     sync.Mutex // protects closed, and fd against reuse once closed
	closed bool
}

// newLogPipe makes a pipe for a worker's output: the read end, and the
// write end for the worker (which the caller closes once the worker
// started). exited is closed when the worker has exited.
func newLogPipe(exited <-chan struct{}) (*logPipe, *os.File, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil { // blocking: never in the network poller
		return nil, nil, fmt.Errorf("raylet: worker pipe: %w", err)
	}
	return &logPipe{fd: fds[0], exited: exited, wake: make(chan struct{}, 1), pause: logPace},
		os.NewFile(uintptr(fds[1]), "worker-output"), nil
}

// Read reads what the pipe holds, waiting for output by polling; once the
// worker has exited it reads until the last writer (the worker's children
// may hold the pipe too) closes, then returns io.EOF.
func (p *logPipe) Read(b []byte) (int, error) {
	for {
		n, err := p.unread()
		if err != nil {
			return 0, err
		}
		if n > 0 {
			p.pause = logPace
			return p.read(b[:min(n, len(b))])
		}
		select {
		case <-p.exited:
			return p.read(b) // blocks until output or the end
		default:
		}
		if p.timer == nil {
			p.timer = time.NewTimer(p.pause)
		} else {
			p.timer.Reset(p.pause)
		}
		select {
		case <-p.timer.C:
		case <-p.wake:
			p.timer.Stop()
		case <-p.exited:
			p.timer.Stop()
		}
		p.pause = min(2*p.pause, maxLogPause)
	}
}

func (p *logPipe) read(b []byte) (int, error) {
	for {
		n, err := unix.Read(p.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, fmt.Errorf("raylet: read worker output: %w", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// unread is how many bytes wait in the pipe (0 once it is closed).
func (p *logPipe) unread() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, nil
	}
	return unix.IoctlGetInt(p.fd, unix.TIOCINQ)
}

// poke has the reader look at the pipe now rather than at its next poll.
func (p *logPipe) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close closes the read end.
func (p *logPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return unix.Close(p.fd)
}
