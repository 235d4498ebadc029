package raylet

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A worker's output comes through a pipe, with a line of the worker's
// own (a mark) before each task's first bytes; read as they came, the
// lines of a worker printing in a loop woke this process for each. So
// while reads come closer than logPace to each other, the copier waits
// logPace before the next one, and takes them many at a time. Output that
// follows a silence is read at once, and so is output a flush waits for
// (caughtUp, which orders a task's lines before its result). (Polling the pipe instead, and
// waiting longer as output stops, delayed the first line after a silence
// by up to the longest wait.)
const logPace = 2 * time.Millisecond

// logPipe is the read end of a worker's output pipe.
type logPipe struct {
	f          *os.File
	last, prev time.Time     // when the last two reads returned
	full       bool          // the last read filled its buffer: more waits
	wake       chan struct{} // a read wanted now (drainLogs)
	pace       *time.Timer   // the wait between paced reads, reused

	mu      sync.Mutex      // protects reading and waiters
	reading bool            // the copier waits in a read: it has handled every whole line read before
	waiters []chan struct{} // flushes (caughtUp) waiting for the copier to read all the pipe holds
}

// newLogPipe makes a pipe for a worker's output: the read end, and the
// write end for the worker (which the caller closes once the worker
// started).
func newLogPipe() (*logPipe, *os.File, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("raylet: worker pipe: %w", err)
	}
	return &logPipe{f: pr, wake: make(chan struct{}, 1)}, pw, nil
}

// Read reads what the pipe holds, waiting until output comes; it returns
// io.EOF once the last writer (the worker, or children of its that hold
// the pipe too) has closed it.
func (p *logPipe) Read(b []byte) (int, error) {
	if !p.full && !p.prev.IsZero() && p.last.Sub(p.prev) < logPace {
		if p.pace == nil {
			p.pace = time.NewTimer(logPace)
		} else {
			p.pace.Reset(logPace)
		}
		select {
		case <-p.pace.C:
		case <-p.wake:
			p.pace.Stop()
		}
	}
	p.mu.Lock()
	p.reading = true
	if len(p.waiters) > 0 {
		if n, err := p.unread(); err != nil || n == 0 {
			p.releaseLocked()
		}
	}
	p.mu.Unlock()
	n, err := p.f.Read(b)
	p.mu.Lock()
	p.reading = false
	p.mu.Unlock()
	p.prev, p.last, p.full = p.last, time.Now(), n == len(b)
	return n, err
}

// caughtUp is closed once the copier has read all that the pipe holds now
// and handled every whole line of it: when it waits in a read of an empty
// pipe (or the pipe has closed). A flush (FlushOutput) waits on it.
func (p *logPipe) caughtUp() <-chan struct{} {
	ch := make(chan struct{})
	p.mu.Lock()
	n, err := p.unread()
	if p.reading && (err != nil || n == 0) {
		close(ch)
	} else {
		p.waiters = append(p.waiters, ch)
	}
	p.mu.Unlock()
	p.poke() // a paced copier reads now
	return ch
}

// releaseLocked closes the channels of the flushes waiting; p.mu is held.
func (p *logPipe) releaseLocked() {
	for _, ch := range p.waiters {
		close(ch)
	}
	p.waiters = nil
}

// unread is how many bytes wait in the pipe.
func (p *logPipe) unread() (int, error) { return unreadBytes(p.f) }

// unreadBytes is how many bytes wait in the pipe f reads, asked without
// Fd, which would switch the pipe to blocking mode (for a worker that
// shares its read end too).
func unreadBytes(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// poke has the reader read now if it is pacing.
func (p *logPipe) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close closes the read end, and lets the flushes waiting go.
func (p *logPipe) Close() error {
	p.mu.Lock()
	p.releaseLocked()
	p.reading = true // nothing is left to read
	p.mu.Unlock()
	return p.f.Close()
}
