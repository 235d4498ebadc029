// Package rpc is rayo's lean framed protocol: protobuf messages over a
// stream socket (Unix on one node), several requests in flight on one
// connection in both directions.
//
// A frame is a 14-byte header, then the body:
//
//	uint32 length of what follows the length field (big endian)
//	uint8  method
//	uint8  kind (request, reply, error reply, notification)
//	uint64 request id (big endian)
//	body   a protobuf message, or an error string for an error reply
//
// Writes are combined: the goroutine that finds the connection idle writes
// everything queued by the time it gets there, so a busy connection makes
// few, large writes and an idle one answers at once without a handoff.
// What the read loop's handlers send while more frames of the same read
// wait goes out in one write once they are handled.
package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Method names what a frame is about.
type Method uint8

// Kind says whether a frame asks, answers or just tells.
type Kind uint8

// The kinds of frame.
const (
	KindRequest Kind = iota + 1
	KindReply
	KindError
	KindNotify
)

const (
	headerLen = 14
	// MaxFrame is the largest body a connection accepts; objects larger than
	// this move through the shared-memory store or in chunks.
	MaxFrame = 64 << 20
	// MaxPreAuthFrame is the largest body a connection that must present
	// the cluster's token accepts before it has: a Hello is far smaller,
	// and a peer that has not authenticated makes the daemon hold no more
	// than this.
	MaxPreAuthFrame = 4 << 10
)

// Errors of a connection.
var (
	ErrClosed  = errors.New("rpc: connection closed")
	ErrCorrupt = errors.New("rpc: malformed frame")
	// ErrIdle is why a server closes a connection whose peer said nothing
	// for its idle timeout.
	ErrIdle = errors.New("rpc: connection closed: the peer was silent for the server's idle timeout")
)

// RemoteError is an error reply from the peer.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Handler serves the frames a peer starts. Handle runs on the connection's
// read loop: it must not block, and body is the handler's to keep. What it
// sends on the connection may wait until the frames read with its own are
// handled, never longer.
type Handler interface {
	Handle(c *Conn, m Method, kind Kind, id uint64, body []byte)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Conn, m Method, kind Kind, id uint64, body []byte)

// Handle calls f.
func (f HandlerFunc) Handle(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	f(c, m, kind, id, body)
}

// Callback receives a reply body or an error.
type Callback func(body []byte, err error)

// Conn is one framed connection.
type Conn struct {
	nc      net.Conn
	handler Handler
	nextID  atomic.Uint64

	wmu      sync.Mutex // protects wbuf, spare, flushing, corked, held, urgent, werr
	wdone    sync.Cond  // on wmu: broadcast when flushing ends
	wbuf     []byte
	spare    []byte
	flushing bool
	corked   int
	held     int  // HoldReplies not yet released: replies wait in wbuf
	urgent   bool // wbuf holds a frame only the cork holds back
	werr     error

	pmu      sync.Mutex // protects pending, closeErr
	pending  map[uint64]Callback
	closeErr error

	// preAuth is set while the peer has yet to present the token: frames
	// are then small (MaxPreAuthFrame), replies are refused, and reads use
	// no large buffer.
	preAuth atomic.Bool
	// recvd counts the frames read, sentN those queued: for the idle
	// timeout and keepalives.
	recvd, sentN atomic.Uint64
	background
	// ident is who the peer authenticated as (see Identity).
	ident atomic.Pointer[Identity]
	// onAuth runs once the peer has authenticated (the server's count of
	// peers still to authenticate).
	onAuth func()

	// sock is the socket under a TLS connection, which gathers the
	// records of one write into few system calls; nil in clear.
	sock *tlsSocket

	done    chan struct{}
	onClose []func(error)
	Value   any // free for the owner of the connection (e.g. the peer's identity)
}

// NewConn wraps nc and starts its read loop. onClose functions run once when
// the connection breaks or is closed.
func NewConn(nc net.Conn, h Handler, onClose ...func(error)) *Conn {
	return newConn(nc, h, false, onClose...)
}

// newConn is NewConn; with preAuth, the peer must authenticate (see
// authenticated) before it may send anything but small frames.
func newConn(nc net.Conn, h Handler, preAuth bool, onClose ...func(error)) *Conn {
	c := &Conn{nc: nc, handler: h, pending: make(map[uint64]Callback), done: make(chan struct{}), onClose: onClose}
	c.wdone.L = &c.wmu
	c.preAuth.Store(preAuth)
	if c.sock = socketOf(nc); c.sock != nil {
		c.sock.conn.Store(c)
	}
	go c.readLoop()
	return c
}

// authenticated lifts the limits of a connection whose peer presented the
// token, and its handshake deadline.
func (c *Conn) authenticated() {
	c.preAuth.Store(false)
	_ = c.nc.SetReadDeadline(time.Time{})
	if c.onAuth != nil {
		c.onAuth()
	}
}

// Dial connects to a Unix socket (or "tcp:HOST:PORT", with the process's
// DefaultTLS).
func Dial(ctx context.Context, addr string, h Handler, onClose ...func(error)) (*Conn, error) {
	nc, err := dialSocket(ctx, addr, DefaultTLS())
	if err != nil {
		return nil, err
	}
	return NewConn(nc, h, onClose...), nil
}

// dialSocket connects to a Unix socket, or to "tcp:HOST:PORT" over TLS
// with t (nil: in clear).
func dialSocket(ctx context.Context, addr string, t *TLS) (net.Conn, error) {
	network, a := "unix", addr
	if len(addr) > 4 && addr[:4] == "tcp:" {
		network, a = "tcp", addr[4:]
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, a)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	if network == "tcp" {
		return clientTLS(ctx, nc, addr, t)
	}
	return nc, nil
}

// Done is closed when the connection is gone.
func (c *Conn) Done() <-chan struct{} { return c.done }

// PeerPID is the process at the other end of a Unix socket connection
// (SO_PEERCRED), or 0 for other connections or when it cannot be told.
func (c *Conn) PeerPID() int {
	uc, ok := c.nc.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// Err is why the connection closed, or nil while it is open.
func (c *Conn) Err() error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.closeErr
}

// Close shuts the connection; pending calls fail with ErrClosed.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	<-c.done
	c.bg.Wait()
	return nil
}

func (c *Conn) fail(err error) {
	c.pmu.Lock()
	if c.closeErr != nil {
		c.pmu.Unlock()
		return
	}
	c.closeErr = err
	pending := c.pending
	c.pending = nil
	c.pmu.Unlock()
	if c.sock != nil {
		// The socket itself: TLS's close_notify is not needed (frames
		// delimit themselves) and could wait on a peer that reads no more.
		_ = c.sock.Conn.Close()
	} else {
		_ = c.nc.Close()
	}
	for _, cb := range pending {
		cb(nil, err)
	}
}

// received counts the frames this process has read, on every connection.
var received atomic.Uint64

// Activity is a count that grows while this process exchanges messages:
// work that would slow them, such as the store's prefault window, waits
// until it stands still.
func Activity() uint64 { return received.Load() }

func (c *Conn) readLoop() {
	r := newFrameReader(c.nc)
	r.mayBorrow = func() bool { return !c.preAuth.Load() }
	defer r.release()
	// While frames read in one go are handled, what the handlers and
	// callbacks send is corked, and written in one go before the next
	// read: a batch of replies that each start a request (an owner's next
	// task on a worker) costs one write, not one each. Nothing waits
	// corked for input: the cork comes off before any read of the socket.
	batch := false
	r.beforeRead = func() {
		if batch {
			batch = false
			_ = c.Uncork()
		}
	}
	var hdr [headerLen]byte
	var err error
	for {
		if err = r.readFull(hdr[:]); err != nil {
			break
		}
		preAuth := c.preAuth.Load()
		limit := uint32(MaxFrame)
		if preAuth {
			limit = MaxPreAuthFrame
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		if n < headerLen-4 || n-(headerLen-4) > limit {
			err = fmt.Errorf("%w: body of %d bytes", ErrCorrupt, int64(n)-(headerLen-4))
			if preAuth {
				err = fmt.Errorf("%w before the peer authenticated", err)
			}
			break
		}
		m, kind, id := Method(hdr[4]), Kind(hdr[5]), binary.BigEndian.Uint64(hdr[6:14])
		received.Add(1)
		c.recvd.Add(1)
		if preAuth && kind != KindRequest {
			err = fmt.Errorf("%w: a frame of kind %d before the peer authenticated", ErrCorrupt, kind)
			break
		}
		body := make([]byte, n-(headerLen-4))
		if err = r.readFull(body); err != nil {
			break
		}
		if m == MPing && kind == KindNotify && !preAuth {
			continue // a keepalive: counted above
		}
		if !batch && r.buffered() > 0 {
			batch = true
			c.Cork()
		}
		if err = c.dispatch(m, kind, id, body); err != nil {
			break
		}
	}
	r.beforeRead() // a batch cut short by a bad frame
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	}
	c.fail(err)
	for _, f := range c.onClose {
		f(c.Err())
	}
	close(c.done)
}

// dispatch passes a frame the peer sent to the callback of its request or
// to the handler, on the read loop.
func (c *Conn) dispatch(m Method, kind Kind, id uint64, body []byte) error {
	switch kind {
	case KindReply, KindError:
		c.pmu.Lock()
		cb := c.pending[id]
		delete(c.pending, id)
		c.pmu.Unlock()
		switch {
		case cb == nil: // a reply nobody waits for any more (cancelled call)
		case kind == KindError:
			cb(nil, &RemoteError{Msg: string(body)})
		default:
			cb(body, nil)
		}
	case KindRequest, KindNotify:
		switch {
		case c.handler != nil:
			c.handler.Handle(c, m, kind, id, body)
		case kind == KindRequest:
			_ = c.ReplyError(id, "rpc: peer serves no requests")
		}
	default:
		return fmt.Errorf("%w: kind %d", ErrCorrupt, kind)
	}
	return nil
}

// send appends one frame and writes it out unless another goroutine is
// already writing, in which case that goroutine takes it along.
func (c *Conn) send(m Method, kind Kind, id uint64, msg proto.Message, raw []byte) error {
	c.sentN.Add(1)
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	if msg == nil && len(raw) >= directMin {
		return c.sendDirectLocked(m, kind, id, raw)
	}
	start := len(c.wbuf)
	c.wbuf = append(c.wbuf, make([]byte, headerLen)...)
	var err error
	if msg != nil {
		c.wbuf, err = proto.MarshalOptions{}.MarshalAppend(c.wbuf, msg)
	} else {
		c.wbuf = append(c.wbuf, raw...)
	}
	if err != nil {
		c.wbuf = c.wbuf[:start]
		c.wmu.Unlock()
		return fmt.Errorf("rpc: encode: %w", err)
	}
	h := c.wbuf[start : start+headerLen]
	binary.BigEndian.PutUint32(h[0:4], uint32(len(c.wbuf)-start-4))
	h[4], h[5] = byte(m), byte(kind)
	binary.BigEndian.PutUint64(h[6:14], id)
	heldReply := c.held > 0 && (kind == KindReply || kind == KindError)
	if c.flushing || c.corked > 0 || heldReply {
		c.urgent = c.urgent || c.corked > 0 && !heldReply
		c.wmu.Unlock()
		return nil
	}
	return c.flushLocked()
}

// directMin is the body size from which a raw frame is written from the
// caller's memory (one writev with its header) rather than copied into the
// write buffer: an object chunk goes from shared memory to the socket with
// no copy in between. Such a frame is its own write, so a cork does not
// hold it back: it takes what the cork held along.
const directMin = 64 << 10

// sendDirectLocked writes a frame whose body is raw without copying raw. It
// waits for its turn on the socket, writes what is buffered, the header and
// raw in one go, then flushes what others added meanwhile. It is called
// with wmu held and releases it; raw is not used after it returns.
func (c *Conn) sendDirectLocked(m Method, kind Kind, id uint64, raw []byte) error {
	for c.flushing && c.werr == nil {
		c.wdone.Wait()
	}
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	h := make([]byte, headerLen)
	binary.BigEndian.PutUint32(h[0:4], uint32(headerLen-4+len(raw)))
	h[4], h[5] = byte(m), byte(kind)
	binary.BigEndian.PutUint64(h[6:14], id)
	pending := c.wbuf
	c.wbuf, c.spare, c.urgent = c.spare[:0], nil, false
	c.flushing = true
	c.wmu.Unlock()
	bufs := net.Buffers{pending, h, raw}
	_, werr := c.writeOut(&bufs)
	c.wmu.Lock()
	if cap(pending) <= 4<<20 && c.spare == nil {
		c.spare = pending[:0]
	}
	if werr != nil {
		c.werr = fmt.Errorf("%w: %v", ErrClosed, werr)
	}
	return c.flushLocked()
}

// writeOut writes bufs to the socket: in clear, with one writev; over
// TLS, with their records gathered into few writes.
func (c *Conn) writeOut(bufs *net.Buffers) (int64, error) {
	if c.sock == nil {
		return bufs.WriteTo(c.nc)
	}
	c.sock.hold()
	n, err := bufs.WriteTo(c.nc)
	if rerr := c.sock.release(); err == nil {
		err = rerr
	}
	return n, err
}

// writeBuf writes one buffer to the socket: in clear with write, which
// costs less than a writev of one vector.
func (c *Conn) writeBuf(buf []byte) error {
	if c.sock == nil {
		_, err := c.nc.Write(buf)
		return err
	}
	_, err := c.writeOut(&net.Buffers{buf})
	return err
}

// Cork holds frames back until the matching Uncork, which writes them in
// one go: for a burst of sends, one system call instead of one each.
func (c *Conn) Cork() {
	c.wmu.Lock()
	c.corked++
	c.wmu.Unlock()
}

// Uncork undoes a Cork, writing what was held back.
func (c *Conn) Uncork() error {
	c.wmu.Lock()
	c.corked--
	if c.corked > 0 || c.flushing || len(c.wbuf) == 0 || c.held > 0 && !c.urgent {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	return c.flushLocked()
}

// HoldReplies keeps the replies sent from now on in the write buffer
// until the matching ReleaseReplies: a server that knows more requests
// of this connection wait writes their replies with one system call
// instead of one each. Any other frame sent meanwhile is written at once,
// and takes the replies held before it along.
func (c *Conn) HoldReplies() {
	c.wmu.Lock()
	c.held++
	c.wmu.Unlock()
}

// ReleaseReplies undoes a HoldReplies, writing the replies held.
func (c *Conn) ReleaseReplies() error {
	c.wmu.Lock()
	c.held--
	if c.held > 0 || c.corked > 0 || c.flushing || len(c.wbuf) == 0 {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	return c.flushLocked()
}

// flushLocked writes the buffer out, taking along what other goroutines
// add meanwhile; it is called with wmu held and releases it.
func (c *Conn) flushLocked() error {
	c.flushing = true
	for len(c.wbuf) > 0 && c.werr == nil {
		buf := c.wbuf
		c.wbuf, c.spare, c.urgent = c.spare[:0], nil, false
		c.wmu.Unlock()
		werr := c.writeBuf(buf)
		c.wmu.Lock()
		if cap(buf) <= 4<<20 {
			c.spare = buf[:0]
		}
		if werr != nil {
			c.werr = fmt.Errorf("%w: %v", ErrClosed, werr)
		}
	}
	c.flushing = false
	c.wdone.Broadcast()
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
	}
	return err
}

// Go sends a request and calls cb with the reply, on the read loop.
func (c *Conn) Go(m Method, req proto.Message, cb Callback) {
	if f := activeFaults.Load(); f != nil {
		var dropped bool
		if dropped, cb = f.inject(m, cb); dropped {
			cb(nil, fmt.Errorf("%w: the request %s was dropped", ErrInjected, m))
			return
		}
	}
	id := c.nextID.Add(1)
	c.pmu.Lock()
	if c.closeErr != nil {
		err := c.closeErr
		c.pmu.Unlock()
		cb(nil, err)
		return
	}
	c.pending[id] = cb
	c.pmu.Unlock()
	if err := c.send(m, KindRequest, id, req, nil); err != nil {
		c.pmu.Lock()
		f := c.pending[id]
		delete(c.pending, id)
		c.pmu.Unlock()
		if f != nil {
			f(nil, err)
		}
	}
}

type result struct {
	body []byte
	err  error
}

// Call sends a request and waits for its reply, decoded into resp (which
// may be nil).
func (c *Conn) Call(ctx context.Context, m Method, req, resp proto.Message) error {
	ch := make(chan result, 1)
	c.Go(m, req, func(body []byte, err error) { ch <- result{body, err} })
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if resp != nil {
			if err := proto.Unmarshal(r.body, resp); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify sends a message that gets no reply.
func (c *Conn) Notify(m Method, msg proto.Message) error {
	return c.send(m, KindNotify, 0, msg, nil)
}

// Reply answers request id.
func (c *Conn) Reply(id uint64, msg proto.Message) error {
	return c.send(0, KindReply, id, msg, nil)
}

// ReplyError answers request id with an error.
func (c *Conn) ReplyError(id uint64, msg string) error {
	return c.send(0, KindError, id, nil, []byte(msg))
}

// ReplyRaw answers request id with bytes that are not a protobuf message
// (a chunk of an object or of an executable).
func (c *Conn) ReplyRaw(id uint64, raw []byte) error {
	return c.send(0, KindReply, id, nil, raw)
}

// CallRaw sends a request and returns the reply's bytes undecoded.
func (c *Conn) CallRaw(ctx context.Context, m Method, req proto.Message) ([]byte, error) {
	ch := make(chan result, 1)
	c.Go(m, req, func(body []byte, err error) { ch <- result{body, err} })
	select {
	case r := <-ch:
		return r.body, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
