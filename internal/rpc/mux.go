package rpc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// Mux is a Handler that routes each frame to the function registered for
// its method, with Handle, HandleAsync, HandleRaw or HandleNotify. It
// decodes the body into the method's request type, checks its size against
// the method's bound, and sends the reply or the error reply: the
// functions registered deal in typed messages only.
//
// A peer that authenticated with a job's credential (see
// Server.RequireToken) is refused the methods the table marks as the
// cluster's own.
//
// What a peer gets wrong gets a clear error reply, never a panic: a
// method nothing is registered for, a body over the method's bound, a body
// that does not decode. A notification for a method that answers is
// served and its reply dropped; a request for a notification method is
// served and answered with an empty reply.
//
// The functions run on the connection's read loop, like any Handler's:
// those that may wait take the async form and reply from elsewhere.
type Mux struct {
	name   string // says whose error replies these are ("raylet")
	routes [256]route
}

// route is how one method is served: serve decodes and answers.
type route func(c *Conn, kind Kind, id uint64, body []byte)

// NewMux makes an empty Mux; name prefixes its error replies.
func NewMux(name string) *Mux { return &Mux{name: name} }

// Handle serves one frame: see Mux.
func (mx *Mux) Handle(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	serve := mx.routes[m]
	if serve == nil {
		if kind == KindRequest {
			_ = c.ReplyError(id, fmt.Sprintf("%s: unknown method %s", mx.name, m))
		}
		return
	}
	if methods[m].clusterOnly {
		if who := c.Identity(); who != nil && who.Job != "" {
			if kind == KindRequest {
				_ = c.ReplyError(id, fmt.Sprintf("%s: %s: %v (the peer holds job %s's)", mx.name, m, ErrClusterOnly, who.Job))
			}
			return
		}
	}
	if limit := methods[m].limit; limit > 0 && len(body) > limit {
		if kind == KindRequest {
			_ = c.ReplyError(id, fmt.Sprintf("%s: %s: %v: body of %d bytes, over the %d this method takes",
				mx.name, m, ErrCorrupt, len(body), limit))
		}
		return
	}
	serve(c, kind, id, body)
}

// decode reads body into msg; when it does not decode, it answers a
// request with why and reports false.
func (mx *Mux) decode(c *Conn, m Method, kind Kind, id uint64, body []byte, msg proto.Message) bool {
	err := proto.Unmarshal(body, msg)
	if err != nil && kind == KindRequest {
		_ = c.ReplyError(id, fmt.Sprintf("%s: %s: %v: %v", mx.name, m, ErrCorrupt, err))
	}
	return err == nil
}

// message is a pointer to a protobuf message type T.
type message[T any] interface {
	*T
	proto.Message
}

// Handle registers h to answer requests of r. It runs on the read loop
// and must not block; its error becomes the error reply.
func Handle[Q, R any, PQ message[Q], PR message[R]](mx *Mux, r Request[Q, R], h func(ctx context.Context, req PQ) (PR, error)) {
	mx.routes[r.Method] = func(c *Conn, kind Kind, id uint64, body []byte) {
		req := PQ(new(Q))
		if !mx.decode(c, r.Method, kind, id, body, req) {
			return
		}
		rep, err := h(connContext{c}, req)
		switch {
		case kind != KindRequest:
		case err != nil:
			_ = c.ReplyError(id, err.Error())
		default:
			_ = c.Reply(id, rep)
		}
	}
}

// HandleAsync registers h to answer requests of r when it is ready: h
// calls reply once, from any goroutine (an error becomes the error reply).
// For a notification, reply does nothing.
func HandleAsync[Q, R any, PQ message[Q], PR message[R]](mx *Mux, r Request[Q, R], h func(ctx context.Context, req PQ, reply func(PR, error))) {
	mx.routes[r.Method] = func(c *Conn, kind Kind, id uint64, body []byte) {
		req := PQ(new(Q))
		if !mx.decode(c, r.Method, kind, id, body, req) {
			return
		}
		h(connContext{c}, req, func(rep PR, err error) {
			switch {
			case kind != KindRequest:
			case err != nil:
				_ = c.ReplyError(id, err.Error())
			default:
				_ = c.Reply(id, rep)
			}
		})
	}
}

// HandleRaw registers h to answer requests of r with bytes that are not a
// protobuf message, as HandleAsync does: h calls reply once, from any
// goroutine. The bytes are written before reply returns.
func HandleRaw[Q any, PQ message[Q]](mx *Mux, r RawRequest[Q], h func(ctx context.Context, req PQ, reply func([]byte, error))) {
	mx.routes[r.Method] = func(c *Conn, kind Kind, id uint64, body []byte) {
		req := PQ(new(Q))
		if !mx.decode(c, r.Method, kind, id, body, req) {
			return
		}
		h(connContext{c}, req, func(b []byte, err error) {
			switch {
			case kind != KindRequest:
			case err != nil:
				_ = c.ReplyError(id, err.Error())
			default:
				_ = c.ReplyRaw(id, b)
			}
		})
	}
}

// HandleNotify registers h to serve the notifications of n. A peer that
// sends one as a request gets an empty reply once h has returned.
func HandleNotify[Q any, PQ message[Q]](mx *Mux, n Notice[Q], h func(ctx context.Context, msg PQ)) {
	mx.routes[n.Method] = func(c *Conn, kind Kind, id uint64, body []byte) {
		msg := PQ(new(Q))
		if !mx.decode(c, n.Method, kind, id, body, msg) {
			return
		}
		h(connContext{c}, msg)
		if kind == KindRequest {
			_ = c.Reply(id, nil)
		}
	}
}

// ConnOf is the connection a request handled by a Mux came on, or nil
// for a context that is not a handler's.
func ConnOf(ctx context.Context) *Conn {
	c, _ := ctx.Value(connKey{}).(*Conn)
	return c
}

type connKey struct{}

// connContext is the context of a request: it ends when its connection
// does, and carries it for ConnOf. It holds one pointer, so it makes no
// allocation.
type connContext struct{ c *Conn }

func (connContext) Deadline() (time.Time, bool) { return time.Time{}, false }

func (x connContext) Done() <-chan struct{} { return x.c.done }

func (x connContext) Err() error {
	select {
	case <-x.c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (x connContext) Value(key any) any {
	if key == (connKey{}) {
		return x.c
	}
	return nil
}

// Decode reads a reply's body into msg; an error wraps ErrCorrupt. (A
// Mux decodes the requests it serves.)
func Decode(body []byte, msg proto.Message) error {
	if err := proto.Unmarshal(body, msg); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}
