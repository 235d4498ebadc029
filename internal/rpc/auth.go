package rpc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

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
	s.token = token
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
	mu    sync.Mutex // protects ok
	ok    bool
}

func (a *authHandler) Handle(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	a.mu.Lock()
	ok := a.ok
	a.mu.Unlock()
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
	c.authenticated()
	_ = c.Reply(id, &pb.Empty{})
}

// DialToken connects and presents the cluster's token.
func DialToken(ctx context.Context, addr, token string, h Handler, onClose ...func(error)) (*Conn, error) {
	c, err := Dial(ctx, addr, h, onClose...)
	if err != nil {
		return nil, err
	}
	if err := Hello(ctx, c, addr, token); err != nil {
		return nil, err
	}
	return c, nil
}

// Hello presents the cluster's token on a new connection to addr (for
// connections made with NewConn); on failure it closes c.
func Hello(ctx context.Context, c *Conn, addr, token string) error {
	if err := c.Call(ctx, MHello, &pb.Status{Error: token}, nil); err != nil {
		_ = c.Close()
		var re *RemoteError
		if errors.As(err, &re) && re.Msg == ErrBadToken.Error() {
			return fmt.Errorf("%s: %w", addr, ErrBadToken)
		}
		return fmt.Errorf("rpc: hello to %s: %w", addr, err)
	}
	return nil
}
