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
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	s.token = pki.Secret(token)
	if s.handshake == 0 {
		s.handshake = DefaultHandshakeTimeout
	}
	s.mu.Unlock()
}

// SetHandshakeTimeout changes how long peers have to present the token.
func (s *Server) SetHandshakeTimeout(d time.Duration) {
	s.mu.Lock()
	s.handshake = d
	s.mu.Unlock()
}

// authHandler passes frames on only once the peer has said the token.
type authHandler struct {
	token string
	next  Handler
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
	if m != MHello || kind != KindRequest || proto.Unmarshal(body, hello) != nil ||
		subtle.ConstantTimeCompare([]byte(hello.Error), []byte(a.token)) != 1 {
		if kind == KindRequest {
			_ = c.ReplyError(id, ErrBadToken.Error())
		}
		go c.Close() // not on the read loop, which Close waits for
		return
	}
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
	_ = c.Reply(id, &pb.Empty{})
}

// DialToken connects and presents the cluster's token; over TCP, with the
// process's DefaultTLS (see DialTLS).
func DialToken(ctx context.Context, addr, token string, h Handler, onClose ...func(error)) (*Conn, error) {
	return DialTLS(ctx, addr, token, DefaultTLS(), h, onClose...)
}

// Hello presents the cluster's token on a new connection to addr (for
// connections made with NewConn); on failure it closes c.
func Hello(ctx context.Context, c *Conn, addr, token string) error {
	if err := c.Call(ctx, MHello, &pb.Status{Error: pki.Secret(token)}, nil); err != nil {
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
	return nil
}
