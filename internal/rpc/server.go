package rpc

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Server accepts connections on one listener and serves each with a
// handler of its own.
type Server struct {
	ln         net.Listener
	newHandler func(*Conn) Handler
	onClose    func(*Conn, error)

	mu    sync.Mutex // protects conns, closed, token, tls, handshaking
	conns map[*Conn]struct{}
	// tls, when set, is what the server speaks (see UseTLS); handshaking
	// holds the connections whose TLS handshake runs.
	tls         *TLS
	handshaking map[net.Conn]struct{}
	closed      bool
	token       string // when set, peers must say it first (see RequireToken)
	jobKey      string // see TrustJobKey
	// idle is how long an authenticated peer may stay silent (see
	// SetIdleTimeout); idleSet, whether SetIdleTimeout chose it.
	idle      time.Duration
	idleSet   bool
	sweepStop chan struct{} // closed to stop the idle sweeper
	sweepWake chan struct{} // tells the sweeper the idle timeout changed
	// handshake is how long they have to say it
	handshake time.Duration
	// Peers that have not said it yet: how many, by host, and the caps.
	pending, maxPending, maxPendingPeer int
	pendingBy                           map[string]int
	wg                                  sync.WaitGroup
}

// NewServer serves ln. newHandler is called for each accepted connection;
// onClose, if not nil, when one breaks.
func NewServer(ln net.Listener, newHandler func(*Conn) Handler, onClose func(*Conn, error)) *Server {
	s := &Server{ln: ln, newHandler: newHandler, onClose: onClose, conns: make(map[*Conn]struct{})}
	if isTCP(ln) {
		s.tls = DefaultTLS()
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or the like: wait a little, longer each
			// time, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		preAuth := s.token != ""
		var admitted func()
		if preAuth {
			if admitted = s.admitLocked(nc); admitted == nil {
				s.mu.Unlock()
				_ = nc.Close() // too many peers still to authenticate
				continue
			}
			_ = nc.SetReadDeadline(time.Now().Add(s.handshake))
		}
		s.wg.Add(1)
		if t := s.tls; t != nil && t.Server != nil {
			// The handshake runs on a goroutine of its own, within the
			// handshake timeout, not on the accept loop.
			timeout := s.handshake
			if timeout <= 0 {
				timeout = DefaultHandshakeTimeout
			}
			if s.handshaking == nil {
				s.handshaking = make(map[net.Conn]struct{})
			}
			s.handshaking[nc] = struct{}{}
			go s.upgrade(nc, t, timeout, preAuth, admitted)
			s.mu.Unlock()
			continue
		}
		s.serveLocked(nc, preAuth, admitted, nil, false)
		s.mu.Unlock()
	}
}

// serveLocked serves an accepted connection (after its TLS handshake, if
// any); it is called with s.mu held and s.wg counting the connection.
// enrollOnly marks a peer that came over TLS without a certificate: it may
// only say the token and enroll (see MEnroll).
func (s *Server) serveLocked(nc net.Conn, preAuth bool, admitted func(), t *TLS, enrollOnly bool) {
	var c *Conn
	h := &lazyHandler{}
	c = newConn(nc, h, preAuth, func(err error) {
		if admitted != nil {
			admitted()
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if s.onClose != nil {
			s.onClose(c, err)
		}
		s.wg.Done()
	})
	c.onAuth = admitted // before the handler, which authenticates, is set
	s.conns[c] = struct{}{}
	var next Handler
	if !enrollOnly {
		next = s.newHandler(c)
	}
	if s.token != "" {
		a := &authHandler{token: s.token, jobKey: s.jobKey, idle: s.idle, next: next, enrollOnly: enrollOnly}
		if t != nil {
			a.enroll = t.Enroll
		}
		next = a
	}
	h.set(next)
}

// Default caps on the connections whose peers have not presented the token
// yet, in all and from one host.
const (
	DefaultMaxPending     = 512
	DefaultMaxPendingPeer = 128
)

// SetPendingLimits caps the connections still to present the token: in
// all, and from one host. Past either, a new connection is closed at once.
func (s *Server) SetPendingLimits(total, perPeer int) {
	s.mu.Lock()
	s.maxPending, s.maxPendingPeer = total, perPeer
	s.mu.Unlock()
}

// admitLocked counts a new connection that must present the token, or
// returns nil when the caps are reached. The function it returns uncounts
// it, once: when the peer authenticates or the connection ends.
func (s *Server) admitLocked(nc net.Conn) func() {
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		host = nc.RemoteAddr().String()
	}
	if s.pendingBy == nil {
		s.pendingBy = make(map[string]int)
	}
	total, perPeer := s.maxPending, s.maxPendingPeer
	if total <= 0 {
		total = DefaultMaxPending
	}
	if perPeer <= 0 {
		perPeer = DefaultMaxPendingPeer
	}
	if s.pending >= total || s.pendingBy[host] >= perPeer {
		return nil
	}
	s.pending++
	s.pendingBy[host]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.pending--
			if s.pendingBy[host]--; s.pendingBy[host] <= 0 {
				delete(s.pendingBy, host)
			}
			s.mu.Unlock()
		})
	}
}

// lazyHandler lets the connection start reading before its handler,
// which needs the *Conn, exists.
type lazyHandler struct {
	ready chan struct{}
	h     Handler
	mu    sync.Mutex
}

func (l *lazyHandler) set(h Handler) {
	l.mu.Lock()
	l.h = h
	if l.ready != nil {
		close(l.ready)
	}
	l.mu.Unlock()
}

func (l *lazyHandler) Handle(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	l.mu.Lock()
	h := l.h
	if h == nil {
		if l.ready == nil {
			l.ready = make(chan struct{})
		}
		ready := l.ready
		l.mu.Unlock()
		<-ready
		l.mu.Lock()
		h = l.h
	}
	l.mu.Unlock()
	h.Handle(c, m, kind, id, body)
}

// Close stops accepting, closes every connection and waits for their
// read loops to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.sweepStop != nil {
		close(s.sweepStop)
	}
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	for nc := range s.handshaking {
		_ = nc.Close() // its handshake fails, and upgrade counts it out
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
	return err
}
