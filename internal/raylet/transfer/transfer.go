// Package transfer moves objects between nodes' stores.
//
// A node that needs an object held by another node pulls it: it creates
// the object in its own store and asks the source raylet for it in chunks
// (ReadChunk), several at a time, over one pooled connection per source,
// reading each chunk from the socket straight into the new object's bytes
// (see chunkConn), then seals it. The source copies each chunk once, into
// the connection's write buffer, two chunks at a time so that one is
// copied while the other is written. Concurrent pulls of one object on one
// node share a single transfer.
//
// The copy is secondary: it is recorded so that it can be evicted, oldest
// first, when the store is too full for another pull, unless a local
// process pins it (reads it; see spill.go). The source remembers
// which connections read each object, and when the object is freed there it
// tells those peers to free their copies too (an MFreeObjects notification,
// which the puller handles by freeing locally, and so on down the chain).
//
// A raylet owns one Manager, which holds the state of its transfers; what
// the Manager needs of the raylet's store and spilling it asks its Host.
package transfer

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/metrics"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

const (
	// ChunkSize is the size of one ReadChunk. Chunks this small keep the
	// source's write buffer (which the reply is copied into) in cache for
	// the copy into the socket, which measures faster than larger ones;
	// smaller ones cost more per byte in requests and wake-ups. Measured
	// with BenchmarkPull: 512 KiB beat 256 KiB, 1, 2 and 4 MiB.
	ChunkSize = 512 << 10
	// pullDepth is how many chunks are requested at once from one source,
	// shared by all the pulls from it: 8 MiB in flight keeps the stream
	// busy while the source serves chunks.
	pullDepth = 16
	// pullDialTimeout bounds connecting to a source raylet.
	pullDialTimeout = 10 * time.Second
	// notHere ends the error a raylet replies to a ReadChunk for an object
	// it does not have (sealed).
	notHere = " not here"
)

// Host is what the transfers need of the raylet that owns them: its
// readers' pins and its spilling.
type Host interface {
	// WithPins runs f while no pin is taken or dropped; pinned reports
	// whether a process of the node reads an object (it is not evicted).
	WithPins(f func(pinned func(ids.ObjectID) bool))
	// CreateSpilling creates an object, spilling primary copies to make
	// room, once no pulled copy is left to evict.
	CreateSpilling(ctx context.Context, id ids.ObjectID, size int64) (int64, error)
	// PinInMemory pins a sealed object in memory while a chunk of it is
	// sent, and says where it is; ok is false when it is not in memory.
	PinInMemory(id ids.ObjectID) (off, size int64, unpin func(), ok bool)
	// ReadSpilled reads length bytes at off of a spilled object; spilled
	// is false when the object is not on disk either.
	ReadSpilled(id ids.ObjectID, off, length int64) (b []byte, spilled bool, err error)
	// WaitSealed waits a while for an object being written to be sealed,
	// and reports whether it was.
	WaitSealed(id ids.ObjectID) bool
	// Free deletes objects from the node, as its owner's free does.
	Free(list []ids.ObjectID)
}

// Config sets up a Manager.
type Config struct {
	Store     *objstore.Store
	Arena     *objstore.Arena
	Host      Host
	Token     string        // the cluster's, presented to source raylets
	Log       *slog.Logger  // evictions, at debug level
	Metrics   *metrics.Node // bytes in and out; nil: none
	ErrClosed error         // what a closed Manager's calls fail with
	// Go runs f on a goroutine its owner waits for when it closes, and
	// reports false, running nothing, once the owner is closed.
	Go func(f func()) bool
}

// Stats counts what a Manager moved.
type Stats struct {
	Served   int64 // ReadChunk requests answered with bytes
	BytesIn  int64 // object bytes received from other nodes
	BytesOut int64 // and sent to them
}

// Manager is one raylet's side of object transfers: its pulls from other
// nodes and what it serves them.
type Manager struct {
	cfg    Config
	ctx    context.Context // cancelled by Close
	cancel context.CancelCauseFunc

	served   atomic.Int64 // ReadChunk requests answered with bytes
	bytesIn  atomic.Int64 // object bytes received from other nodes
	bytesOut atomic.Int64 // and sent to them

	mu       sync.Mutex // protects the fields below
	closed   bool
	inflight map[ids.ObjectID]*pullCall
	pulled   map[ids.ObjectID]*list.Element // secondary copies, sealed
	order    *list.List                     // of ids.ObjectID, oldest pull first
	sources  map[string]*sourceConn
	readers  map[ids.ObjectID]map[*rpc.Conn]struct{} // who read each object of ours
	senders  map[*rpc.Conn]*chunkSender

	createMu sync.Mutex // serializes create-or-evict
}

// New makes a raylet's Manager.
func New(cfg Config) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:      cfg,
		inflight: make(map[ids.ObjectID]*pullCall),
		pulled:   make(map[ids.ObjectID]*list.Element),
		order:    list.New(),
		sources:  make(map[string]*sourceConn),
		readers:  make(map[ids.ObjectID]map[*rpc.Conn]struct{}),
		senders:  make(map[*rpc.Conn]*chunkSender),
	}
	m.ctx, m.cancel = context.WithCancelCause(context.Background())
	return m
}

// sourceConn is the pooled connection to one source raylet.
type sourceConn struct {
	sem   chan struct{} // held while dialing
	slots chan struct{} // one per ReadChunk in flight, up to pullDepth
	link  *pullLink     // nil until dialed; replaced when broken
}

// pullLink is a connection to a source raylet: the rpc.Conn, and under it
// the chunkConn that places chunks straight into objects.
type pullLink struct {
	conn *rpc.Conn
	cc   *chunkConn
}

// pullCall is one transfer in flight, shared by the Pulls that wait for it.
type pullCall struct {
	done chan struct{} // closed when off and err are set
	off  int64
	err  error

	waiters   int  // Pulls waiting; guarded by xferState.mu
	abandoned bool // every waiter gave up; guarded by xferState.mu
	cancel    context.CancelCauseFunc

	wmu     sync.Mutex // held while writing into the object's bytes
	aborted error      // set under wmu: no more writes
}

// abort stops the transfer's writes into the store: once it returns, no
// byte of the object is written any more.
func (pc *pullCall) abort(cause error) {
	pc.wmu.Lock()
	if pc.aborted == nil {
		pc.aborted = cause
	}
	pc.wmu.Unlock()
	pc.cancel(cause)
}

// Close cancels the transfers and closes the pooled connections; the
// goroutines of the transfers end, and the owner waits for them (see
// Config.Go).
func (m *Manager) Close() {
	m.cancel(m.cfg.ErrClosed)
	m.mu.Lock()
	m.closed = true
	var conns []*rpc.Conn
	for _, s := range m.sources {
		if s.link != nil {
			conns = append(conns, s.link.conn)
		}
	}
	m.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Pull copies an object of size bytes (its exact size) from the raylet at
// from (a TCP address) into this node's store, and returns its offset here.
// An object already sealed here is not copied again, and concurrent Pulls
// of one object share one transfer. Errors wrap objstore.ErrObjectLost when the source
// does not have the object or cannot be reached, and objstore.ErrFull when
// the object does not fit even after evicting older pulled copies.
func (m *Manager) Pull(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	if off, _, ok := m.cfg.Store.Lookup(id); ok {
		return off, nil
	}
	if size < 0 {
		return 0, fmt.Errorf("raylet: pull %s: negative size %d", id, size)
	}
	if from == "" {
		return 0, fmt.Errorf("raylet: pull %s: no source address", id)
	}
	for {
		m.mu.Lock()
		pc := m.inflight[id]
		if pc != nil && pc.abandoned {
			// Being cancelled: wait for it to clean up, then start anew.
			m.mu.Unlock()
			select {
			case <-pc.done:
				continue
			case <-ctx.Done():
				return 0, fmt.Errorf("raylet: pull %s: %w", id, context.Cause(ctx))
			}
		}
		if pc == nil {
			// A transfer seals before it leaves inflight, so this sees it.
			if off, _, ok := m.cfg.Store.Lookup(id); ok {
				m.mu.Unlock()
				return off, nil
			}
			var err error
			if pc, err = m.start(id, from, size); err != nil {
				m.mu.Unlock()
				return 0, fmt.Errorf("raylet: pull %s: %w", id, err)
			}
		}
		pc.waiters++
		m.mu.Unlock()

		select {
		case <-pc.done:
			if pc.err != nil {
				return 0, fmt.Errorf("raylet: pull %s from %s: %w", id, from, pc.err)
			}
			return pc.off, nil
		case <-ctx.Done():
			m.mu.Lock()
			pc.waiters--
			last := pc.waiters == 0
			if last {
				pc.abandoned = true
			}
			m.mu.Unlock()
			if last {
				// Nobody wants it any more: stop it, and wait until its
				// partial object is gone.
				pc.abort(context.Cause(ctx))
				<-pc.done
			}
			return 0, fmt.Errorf("raylet: pull %s: %w", id, context.Cause(ctx))
		}
	}
}

// start launches the transfer of id; m.mu is held.
func (m *Manager) start(id ids.ObjectID, from string, size int64) (*pullCall, error) {
	if m.closed {
		return nil, m.cfg.ErrClosed
	}
	ctx, cancel := context.WithCancelCause(m.ctx)
	pc := &pullCall{done: make(chan struct{}), cancel: cancel}
	// The owner waits for the transfer when it closes: it writes into the
	// arena. The goroutine finds pc in inflight: it needs m.mu first.
	if !m.cfg.Go(func() {
		off, secondary, err := m.transfer(ctx, pc, id, from, size)
		m.mu.Lock()
		if err == nil && secondary {
			m.pulled[id] = m.order.PushBack(id)
		}
		delete(m.inflight, id)
		pc.off, pc.err = off, err
		close(pc.done)
		m.mu.Unlock()
		cancel(nil)
	}) {
		cancel(nil)
		return nil, m.cfg.ErrClosed
	}
	m.inflight[id] = pc
	return pc, nil
}

// transfer copies the object; secondary is false when it turned out to be
// in the store already (created here meanwhile, not by a pull).
func (m *Manager) transfer(ctx context.Context, pc *pullCall, id ids.ObjectID, from string, size int64) (off int64, secondary bool, err error) {
	src, link, err := m.dial(ctx, from)
	if err != nil {
		return 0, false, err
	}
	off, err = m.create(ctx, id, size)
	if errors.Is(err, objstore.ErrExists) {
		if off, _, ok := m.cfg.Store.Lookup(id); ok {
			return off, false, nil
		}
	}
	if err != nil {
		return 0, false, err
	}
	defer func() {
		if err != nil {
			pc.abort(err)
			_, _ = m.cfg.Store.Delete(id)
		}
	}()
	dst, err := m.cfg.Arena.Slice(off, size)
	if err != nil {
		return 0, false, err
	}
	defer m.prefault(off, size)()
	n := int((size + ChunkSize - 1) / ChunkSize)
	if n == 0 {
		n = 1 // an empty object: still ask, to learn that the source has it
	}
	todo := make([]int, n)
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; ; attempt++ {
		var broken error
		todo, broken, err = fetch(ctx, pc, src.slots, link, id, dst, todo)
		if err != nil {
			return 0, false, err
		}
		if broken == nil {
			break
		}
		// The connection broke: the source may have restarted it (or
		// died). Try once more on a new one.
		if attempt > 0 {
			return 0, false, fmt.Errorf("%w: connection to %s: %w", objstore.ErrObjectLost, from, broken)
		}
		if _, link, err = m.dial(ctx, from); err != nil {
			return 0, false, err
		}
	}
	if err := m.cfg.Store.Seal(id); err != nil {
		return 0, false, fmt.Errorf("raylet: seal pulled object: %w", err)
	}
	m.bytesIn.Add(size)
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.BytesIn.Add(float64(size))
	}
	return off, true, nil
}

// prefault maps the pages of [off, off+size) of the arena for the
// transfer, on another goroutine, and returns a function that stops it and
// waits for it. Pages of the store never used before cost the kernel about
// as much to provide one by one, as the transfer writes them, as the
// transfer itself; in bulk, on the other core, less. It works from the end
// back, so that it and the transfer, which writes from the start, meet
// rather than fault the same pages. Pages already mapped are passed over
// quickly.
func (m *Manager) prefault(off, size int64) (stop func()) {
	const page, step = 4096, 4 << 20
	start := off &^ (page - 1)
	end := min((off+size+page-1)&^(page-1), m.cfg.Arena.Capacity()&^(page-1))
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := end; p > start && !stopped.Load(); p -= step {
			from := max(p-step, start)
			b, err := m.cfg.Arena.Slice(from, p-from)
			// Kernels before 5.14 do not know the advice: never mind.
			if err != nil || len(b) == 0 || unix.Madvise(b, unix.MADV_POPULATE_WRITE) != nil {
				return
			}
		}
	}()
	return func() {
		stopped.Store(true)
		<-done
	}
}

// chunkResult is the answer to one ReadChunk.
type chunkResult struct {
	d    *chunkDst
	body []byte
	err  error
}

// fetch reads chunks todo of id into dst, as many at once as it gets slots
// (the source's share of requests in flight). It returns the chunks still
// to read and why when the connection broke, or an error that ends the
// transfer.
func fetch(ctx context.Context, pc *pullCall, slots chan struct{}, link *pullLink, id ids.ObjectID, dst []byte, todo []int) (left []int, broken, err error) {
	size := int64(len(dst))
	// Buffered for every request this fetch can have in flight, so the
	// callbacks, which run on the connection's read loop, never block.
	results := make(chan chunkResult, pullDepth)
	var expected []*chunkDst
	defer func() { link.cc.forget(expected) }()
	next, outstanding := 0, 0
	for {
	issue:
		for next < len(todo) && broken == nil {
			// Wait for a slot only when nothing of ours is in flight;
			// otherwise take a free one or go and read a result.
			if outstanding == 0 {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return nil, nil, context.Cause(ctx)
				}
			} else {
				select {
				case slots <- struct{}{}:
				default:
					break issue
				}
			}
			i := todo[next]
			next++
			outstanding++
			off := int64(i) * ChunkSize
			d := &chunkDst{key: chunkKey{id, off}, i: i, pc: pc, dst: dst[off : off+min(ChunkSize, size-off)]}
			link.cc.expect(d)
			expected = append(expected, d)
			req := &pb.ReadChunk{ObjectId: id[:], Offset: off, Length: int64(len(d.dst))}
			link.conn.Go(rpc.MReadChunk, req, func(body []byte, err error) {
				<-slots
				results <- chunkResult{d, body, err}
			})
		}
		if outstanding == 0 {
			return left, broken, nil
		}
		var res chunkResult
		select {
		case res = <-results:
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
		outstanding--
		if res.err != nil {
			var re *rpc.RemoteError
			switch {
			case errors.As(res.err, &re) && strings.HasSuffix(re.Msg, notHere):
				return nil, nil, fmt.Errorf("%w: %s", objstore.ErrObjectLost, re.Msg)
			case re != nil:
				return nil, nil, fmt.Errorf("raylet: read chunk: %w", res.err)
			}
			if broken == nil {
				broken = res.err
				left = append(left, todo[next:]...)
			}
			left = append(left, res.d.i)
			continue
		}
		if err := res.d.land(res.body); err != nil {
			return nil, nil, err
		}
	}
}

// dial returns the pooled connection to the raylet at addr, connecting if
// there is none or it broke.
func (m *Manager) dial(ctx context.Context, addr string) (*sourceConn, *pullLink, error) {
	m.mu.Lock()
	s := m.sources[addr]
	if s == nil {
		s = &sourceConn{sem: make(chan struct{}, 1), slots: make(chan struct{}, pullDepth)}
		m.sources[addr] = s
	}
	m.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	}
	defer func() { <-s.sem }()
	m.mu.Lock()
	l := s.link
	m.mu.Unlock()
	if l != nil && l.conn.Err() == nil {
		return s, l, nil
	}
	dctx, cancel := context.WithTimeout(ctx, pullDialTimeout)
	defer cancel()
	l, err := dialSource(dctx, addr, m.cfg.Token, m.sourceMux())
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, nil, context.Cause(ctx)
		case errors.Is(err, rpc.ErrBadToken):
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: source unreachable: %w", objstore.ErrObjectLost, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = l.conn.Close()
		return nil, nil, m.cfg.ErrClosed
	}
	s.link = l
	m.mu.Unlock()
	return s, l, nil
}

// dialSource connects to a source raylet over TCP and presents the
// cluster's token, as rpc.DialToken does, with a chunkConn under the
// rpc.Conn.
func dialSource(ctx context.Context, addr, token string, h rpc.Handler) (*pullLink, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raylet: dial %s: %w", addr, err)
	}
	if nc, err = rpc.ClientTLS(ctx, nc, "tcp:"+addr); err != nil {
		return nil, err
	}
	cc := newChunkConn(nc)
	c := rpc.NewConn(cc, h)
	if err := rpc.Hello(ctx, c, addr, token); err != nil {
		return nil, err
	}
	return &pullLink{conn: c, cc: cc}, nil
}

// sourceMux serves what a source raylet sends on a pull connection: the
// notice that objects pulled from it were freed there.
func (m *Manager) sourceMux() *rpc.Mux {
	mx := rpc.NewMux("raylet (pull connection)")
	rpc.HandleNotify(mx, rpc.FreeObjects, func(_ context.Context, req *pb.ObjectIDs) {
		list := objectIDs(req)
		// A transfer of one of them stops writing before its object goes.
		m.abortPulls(list, fmt.Errorf("%w: freed at the source while being pulled", objstore.ErrObjectLost))
		m.cfg.Host.Free(list)
	})
	return mx
}

// abortPulls stops the transfers of list in flight.
func (m *Manager) abortPulls(list []ids.ObjectID, cause error) {
	var calls []*pullCall
	m.mu.Lock()
	for _, id := range list {
		if pc := m.inflight[id]; pc != nil {
			calls = append(calls, pc)
		}
	}
	m.mu.Unlock()
	for _, pc := range calls {
		pc.abort(cause)
	}
}

// create makes room for a pulled object, evicting older pulled copies
// that no local process is reading (pinned) while the store is full, then
// spilling primaries. A copy that a process of this node pulled, and
// may still have mapped, is not evicted while that process lives: only its
// owner's free (forwarded here) removes it.
func (m *Manager) create(ctx context.Context, id ids.ObjectID, size int64) (int64, error) {
	m.createMu.Lock()
	defer m.createMu.Unlock()
	for {
		off, err := m.cfg.Store.Create(id, size)
		if !errors.Is(err, objstore.ErrFull) {
			return off, err
		}
		// Evicted under the pins' lock, so that no reader pins it between
		// the look and the delete.
		m.mu.Lock()
		var e *list.Element
		m.cfg.Host.WithPins(func(pinned func(ids.ObjectID) bool) {
			e = m.order.Front()
			for e != nil && pinned(e.Value.(ids.ObjectID)) {
				e = e.Next() // a local process is reading it
			}
			if e != nil {
				victim := m.order.Remove(e).(ids.ObjectID)
				delete(m.pulled, victim)
				if _, derr := m.cfg.Store.Delete(victim); derr == nil {
					m.cfg.Log.Debug("evicted pulled copy", "object", victim.String())
				}
			}
		})
		m.mu.Unlock()
		if e == nil {
			// No copy left to evict: primaries spill to make room.
			return m.cfg.Host.CreateSpilling(ctx, id, size)
		}
	}
}

// IsPulled reports whether id is a copy pulled from another node (which
// is evicted when room is short, never spilled).
func (m *Manager) IsPulled(id ids.ObjectID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pulled[id] != nil
}
