package rpc

import (
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Idle timeouts.
//
// A server that wants a token closes an authenticated connection on which
// its peer has sent nothing for the idle timeout (DefaultIdleTimeout,
// SetIdleTimeout), so that connections a peer forgot, or holds open to
// use up the server's descriptors, do not stay forever. Long-lived links
// that may be quiet (a raylet's to the control store between views, to a
// driver that prints nothing, an owner's to a worker between tasks) are
// kept by keepalives: the server says its timeout in its answer to Hello,
// and the client (Hello) sends a ping, a frame of no content, whenever it
// has sent nothing for a third of it. A peer that says nothing, not even
// pings, is closed.

// MPing is a keepalive: a notification with no body, which the read loop
// counts and drops.
const MPing Method = 253

// DefaultIdleTimeout is how long an authenticated peer of a server that
// wants a token may stay silent.
const DefaultIdleTimeout = 5 * time.Minute

// SetIdleTimeout changes how long an authenticated peer may stay silent
// before the server closes its connection (0 or less: never).
func (s *Server) SetIdleTimeout(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idle = d
	s.idleSet = true
	select {
	case s.sweepWake <- struct{}{}: // a running sweeper takes the new period
	default:
	}
	s.startSweeperLocked()
}

// startSweeperLocked starts the goroutine that closes idle connections,
// once, when the server has a token and an idle timeout; s.mu is held.
func (s *Server) startSweeperLocked() {
	if s.sweepStop != nil || s.closed || s.token == "" || s.idle <= 0 {
		return
	}
	s.sweepStop = make(chan struct{})
	s.sweepWake = make(chan struct{}, 1)
	s.wg.Add(1)
	go s.sweep(s.sweepStop)
}

// quiet is what the sweeper last saw of a connection: how many frames it
// had received, and since when that count stands still.
type quiet struct {
	frames uint64
	since  time.Time
}

// sweep closes the authenticated connections silent for the idle timeout,
// checking four times per timeout, until stop closes.
func (s *Server) sweep(stop chan struct{}) {
	defer s.wg.Done()
	// The period follows the timeout as it is now: SetIdleTimeout may
	// change it after the sweeper started (RequireToken starts it with the
	// default).
	period := func() time.Duration {
		s.mu.Lock()
		defer s.mu.Unlock()
		return max(s.idle/4, 10*time.Millisecond)
	}
	tick := time.NewTimer(period())
	defer tick.Stop()
	seen := make(map[*Conn]quiet)
	for {
		select {
		case <-stop:
			return
		case <-s.sweepWake:
			if !tick.Stop() {
				select {
				case <-tick.C:
				default:
				}
			}
			tick.Reset(period())
		case now := <-tick.C:
			var idle []*Conn
			s.mu.Lock()
			limit := s.idle
			tick.Reset(max(limit/4, 10*time.Millisecond))
			for c := range seen {
				if _, ok := s.conns[c]; !ok {
					delete(seen, c)
				}
			}
			for c := range s.conns {
				if c.preAuth.Load() {
					continue // the handshake deadline applies
				}
				n := c.recvd.Load()
				q, ok := seen[c]
				switch {
				case !ok || q.frames != n:
					seen[c] = quiet{n, now}
				case limit > 0 && now.Sub(q.since) >= limit:
					idle = append(idle, c)
					delete(seen, c)
				}
			}
			s.mu.Unlock()
			for _, c := range idle {
				c.fail(ErrIdle)
			}
		}
	}
}

// keepAlive sends a ping whenever the connection has sent nothing for
// every, until it closes; Close waits for it.
func (c *Conn) keepAlive(every time.Duration) {
	c.bgOnce.Do(func() {
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			last := c.sentN.Load()
			for {
				select {
				case <-c.done:
					return
				case <-tick.C:
					if n := c.sentN.Load(); n != last {
						last = n
						continue
					}
					_ = c.send(MPing, KindNotify, 0, nil, nil)
					last = c.sentN.Load()
				}
			}
		}()
	})
}

// helloReply is a server's answer to Hello: its idle timeout, in
// milliseconds (0: none).
func helloReply(idle time.Duration) *wrapperspb.Int64Value {
	return wrapperspb.Int64(idle.Milliseconds())
}

// background is the goroutines a connection runs besides its read loop
// (keepalives); embedded in Conn.
type background struct {
	bgOnce sync.Once
	bg     sync.WaitGroup
}
