package rpc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// MHello is the first request on a connection to a server that wants a
// token: its body is a pb.Status whose Error field carries the token.
const MHello Method = 255

// ErrBadToken is how a connection without the cluster's token is refused.
var ErrBadToken = errors.New("rpc: connection refused: wrong or missing cluster token")

// DefaultHandshakeTimeout is how long a peer of a server that wants a
// token has to present it.
const DefaultHandshakeTimeout = 10 * time.Second

// RequireToken makes every connection the server accepts present token
// first, within the handshake timeout: until then the peer may send only a
// Hello of at most MaxPreAuthFrame bytes; anything else closes the
// connection.
//
// What a peer may present depends on token. When it is the cluster's
// secret (a daemon's server), a peer presents the secret, and has the
// cluster's role, or a job credential made with it (pki.JobCredential),
// verified without a lookup, and has that job's role: the Mux refuses it
// the cluster's own methods. When token is itself a job credential (the
// server of a job's driver or worker, which holds no secret), a peer must
// present that same credential, and has that job's role (or, with
// TrustJobKey, another job's credential, and that job's role).
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	s.token = pki.Secret(token)
	if s.handshake == 0 {
		s.handshake = DefaultHandshakeTimeout
	}
	if !s.idleSet {
		s.idle = DefaultIdleTimeout
	}
	s.startSweeperLocked()
	s.mu.Unlock()
}

// TrustJobKey makes a server whose token is a job's credential (see
// RequireToken) take other jobs' credentials too, those that the
// cluster's job key (pki.JobKey, hex) signed: their peers get their own
// job's role, and the server's handlers decide what another job may do
// (call an actor, not kill it). Without it, such a server takes its own
// job's credential only.
func (s *Server) TrustJobKey(key string) {
	s.mu.Lock()
	s.jobKey = key
	s.mu.Unlock()
}

// SetHandshakeTimeout changes how long peers have to present the token.
func (s *Server) SetHandshakeTimeout(d time.Duration) {
	s.mu.Lock()
	s.handshake = d
	s.mu.Unlock()
}

// ErrClusterOnly refuses a peer with a job's credential one of the
// cluster's own methods.
var ErrClusterOnly = errors.New("rpc: refused: a job's credential may not call the cluster's own methods")

// Identity is who a peer authenticated as, on a server that wants a token.
type Identity struct {
	// Job is the job whose credential the peer presented; "" when it
	// presented the cluster's secret.
	Job string
}

// Identity is what the peer authenticated as: nil on a connection whose
// server wants no token (a Unix socket, whose peers are this user's
// processes) and on the connections this process dialed.
func (c *Conn) Identity() *Identity { return c.ident.Load() }

// JobOf is the job whose credential the peer of a request handled by a
// Mux presented, or "" (the cluster's secret, a Unix socket, a
// connection this process dialed).
func JobOf(ctx context.Context) string {
	if c := ConnOf(ctx); c != nil {
		if id := c.Identity(); id != nil {
			return id.Job
		}
	}
	return ""
}

// check is who token authenticates as on a server that wants want (and
// takes other jobs' credentials signed by jobKey, if set), or false.
func check(want, jobKey, token string) (*Identity, bool) {
	if pki.IsJobCredential(want) {
		// A job's process: its own credential, or another job's that the
		// cluster's job key signed.
		if subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 {
			job, _ := pki.JobOfCredential(want)
			return &Identity{Job: job}, true
		}
		if jobKey == "" {
			return nil, false
		}
		job, err := pki.VerifyJobCredentialKey(jobKey, token)
		return &Identity{Job: job}, err == nil
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 {
		return &Identity{}, true
	}
	if job, err := pki.VerifyJobCredential(want, token); err == nil {
		return &Identity{Job: job}, true
	}
	return nil, false
}

// authHandler passes frames on only once the peer has said the token.
type authHandler struct {
	token  string
	jobKey string        // see TrustJobKey
	idle   time.Duration // told the peer in answer to Hello
	next   Handler
	// enrollOnly: the peer came over TLS without a certificate; once it
	// has said the token, it may only ask for one (enroll).
	enrollOnly bool
	enroll     func([]byte) ([]byte, error)
	mu         sync.Mutex // protects ok
	ok         bool
}

func (a *authHandler) Handle(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	a.mu.Lock()
	ok := a.ok
	a.mu.Unlock()
	if ok && a.enrollOnly {
		if m == MEnroll && a.enroll != nil {
			handleEnroll(c, a.enroll, kind, id, body)
			return
		}
		if kind == KindRequest {
			_ = c.ReplyError(id, errEnrollOnly.Error())
		}
		go c.Close()
		return
	}
	if ok {
		a.next.Handle(c, m, kind, id, body)
		return
	}
	hello := &pb.Status{}
	var ident *Identity
	good := m == MHello && kind == KindRequest && proto.Unmarshal(body, hello) == nil
	if good {
		ident, good = check(a.token, a.jobKey, hello.Error)
	}
	if good && a.enrollOnly && ident.Job != "" {
		good = false // a job's credential does not get a node certificate
	}
	if !good {
		if kind == KindRequest {
			_ = c.ReplyError(id, ErrBadToken.Error())
		}
		go c.Close() // not on the read loop, which Close waits for
		return
	}
	c.ident.Store(ident)
	a.mu.Lock()
	a.ok = true
	a.mu.Unlock()
	if a.enrollOnly {
		// It keeps the limits (and the deadline) of a peer that has not
		// authenticated: a certificate request is small and quick.
		_ = c.Reply(id, &pb.Empty{})
		return
	}
	c.authenticated()
	_ = c.Reply(id, helloReply(a.idle))
}

// DialToken connects and presents the cluster's token; over TCP, with the
// process's DefaultTLS (see DialTLS).
func DialToken(ctx context.Context, addr, token string, h Handler, onClose ...func(error)) (*Conn, error) {
	return DialTLS(ctx, addr, token, DefaultTLS(), h, onClose...)
}

// Hello presents the cluster's token on a new connection to addr (for
// connections made with NewConn); on failure it closes c.
//
// When the server says it closes silent connections (its idle timeout),
// c sends keepalives (MPing) whenever it has sent nothing for a third of
// that, until it closes.
func Hello(ctx context.Context, c *Conn, addr, token string) error {
	idle := &wrapperspb.Int64Value{}
	if err := c.Call(ctx, MHello, &pb.Status{Error: pki.Secret(token)}, idle); err != nil {
		_ = c.Close()
		var re *RemoteError
		if errors.As(err, &re) && re.Msg == ErrBadToken.Error() {
			return fmt.Errorf("%s: %w", addr, ErrBadToken)
		}
		if errors.As(err, &re) && re.Msg == ErrTLSRequired.Error() {
			return fmt.Errorf("%s: %w", addr, ErrTLSRequired)
		}
		return fmt.Errorf("rpc: hello to %s: %w", addr, err)
	}
	if ms := idle.GetValue(); ms > 0 {
		c.keepAlive(max(time.Duration(ms)*time.Millisecond/3, time.Millisecond))
	}
	return nil
}
