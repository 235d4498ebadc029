package worker

import (
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
)

// Replies held together. An owner that pipelines tasks to a worker (many
// calls in flight, as ray.get of a list does) would otherwise cost one
// write per reply: a system call, about a tenth of an empty task's time.
// While the next queued task came on the same connection, the worker holds
// the replies (rpc.Conn.HoldReplies) and writes them in one go when the
// queue of that connection runs dry, after maxHeld of them, or once the
// first has waited maxHold: a long task that follows short ones delays
// their replies by maxHold at most, which the watchdog (holdWatch) ensures
// even while that task runs.
const (
	maxHeld = 64
	maxHold = time.Millisecond
)

// replyHolder is the worker's replies held on one connection.
type replyHolder struct {
	mu    sync.Mutex // protects the fields below
	conn  *rpc.Conn  // the connection whose replies are held, or nil
	since time.Time  // when the first was held
	n     int        // replies held
	wake  chan struct{}
	hold  time.Duration // how long the first reply held may wait; maxHold if 0
}

// limit is how long the first reply held may wait.
func (h *replyHolder) limit() time.Duration {
	if h.hold > 0 {
		return h.hold
	}
	return maxHold
}

// send sends a task's reply with reply, holding it if more tasks of conn
// wait (more) and writing what is held otherwise.
func (h *replyHolder) send(conn *rpc.Conn, more bool, reply func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil && h.conn != conn {
		h.releaseLocked()
	}
	if more && conn != nil && h.conn == nil {
		conn.HoldReplies()
		h.conn, h.since, h.n = conn, time.Now(), 0
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	reply()
	if h.conn == nil {
		return
	}
	h.n++
	if !more || h.n >= maxHeld || time.Since(h.since) >= h.limit() {
		h.releaseLocked()
	}
}

// releaseLocked writes the replies held; h.mu is held.
func (h *replyHolder) releaseLocked() {
	_ = h.conn.ReleaseReplies() // a failed write fails the connection, and its owner sees it
	h.conn = nil
}

// watch writes the replies held longer than maxHold, while a task runs
// after them: it wakes when replies start to be held, and looks every
// maxHold until none are. It runs for the life of the worker process.
func (h *replyHolder) watch() {
	for range h.wake {
		for {
			time.Sleep(h.limit())
			h.mu.Lock()
			if h.conn != nil && time.Since(h.since) >= h.limit() {
				h.releaseLocked()
			}
			idle := h.conn == nil
			h.mu.Unlock()
			if idle {
				break
			}
		}
	}
}
