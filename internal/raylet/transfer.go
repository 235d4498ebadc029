package raylet

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Object transfer between nodes.
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
// The Raylet's fields live in raylet.go; the transfer's state is kept per
// raylet in xferStates, created on first use and dropped when the raylet
// closes.

// ErrObjectLost means the node that held an object no longer has it, or
// cannot be reached: the object must be rebuilt (or fetched elsewhere). It
// is core.ErrObjectLost (rayo.ErrObjectLost), which owners answer by
// rebuilding the object.
var ErrObjectLost = core.ErrObjectLost

const (
	// pullChunk is the size of one ReadChunk. Chunks this small keep the
	// source's write buffer (which the reply is copied into) in cache for
	// the copy into the socket, which measures faster than larger ones;
	// smaller ones cost more per byte in requests and wake-ups. Measured
	// with BenchmarkPull: 512 KiB beat 256 KiB, 1, 2 and 4 MiB.
	pullChunk = 512 << 10
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

// errNotPull answers requests other than frees on a pull connection.
const errNotPull = "raylet: a pull connection serves only frees"

// xferStates maps each *Raylet that has taken part in a transfer to its
// *xferState.
var xferStates sync.Map

// xferState is one raylet's side of object transfers.
type xferState struct {
	r      *Raylet
	ctx    context.Context // cancelled when the raylet closes
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

// xfer returns the raylet's transfer state, creating it on first use; nil
// once the raylet is closed.
func (r *Raylet) xfer() *xferState {
	if v, ok := xferStates.Load(r); ok {
		return v.(*xferState)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if v, ok := xferStates.Load(r); ok {
		return v.(*xferState)
	}
	st := &xferState{
		r:        r,
		inflight: make(map[ids.ObjectID]*pullCall),
		pulled:   make(map[ids.ObjectID]*list.Element),
		order:    list.New(),
		sources:  make(map[string]*sourceConn),
		readers:  make(map[ids.ObjectID]map[*rpc.Conn]struct{}),
		senders:  make(map[*rpc.Conn]*chunkSender),
	}
	st.ctx, st.cancel = context.WithCancelCause(context.Background())
	xferStates.Store(r, st)
	r.procs.Add(1)
	go st.closeWith(r.stop)
	return st
}

// closeWith waits for the raylet to close, then cancels transfers and
// closes the pooled connections.
func (st *xferState) closeWith(stop <-chan struct{}) {
	defer st.r.procs.Done()
	<-stop
	st.cancel(ErrClosed)
	st.mu.Lock()
	st.closed = true
	var conns []*rpc.Conn
	for _, s := range st.sources {
		if s.link != nil {
			conns = append(conns, s.link.conn)
		}
	}
	st.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	xferStates.Delete(st.r)
}

// Pull copies an object of size bytes (its exact size) from the raylet at
// from (a TCP address) into this node's store, and returns its offset here.
// An object already sealed here is not copied again, and concurrent Pulls
// of one object share one transfer. Errors wrap ErrObjectLost when the source
// does not have the object or cannot be reached, and objstore.ErrFull when
// the object does not fit even after evicting older pulled copies.
func (r *Raylet) Pull(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	if off, _, ok := r.store.Lookup(id); ok {
		return off, nil
	}
	if size < 0 {
		return 0, fmt.Errorf("raylet: pull %s: negative size %d", id, size)
	}
	if from == "" {
		return 0, fmt.Errorf("raylet: pull %s: no source address", id)
	}
	st := r.xfer()
	if st == nil {
		return 0, fmt.Errorf("raylet: pull %s: %w", id, ErrClosed)
	}
	for {
		st.mu.Lock()
		pc := st.inflight[id]
		if pc != nil && pc.abandoned {
			// Being cancelled: wait for it to clean up, then start anew.
			st.mu.Unlock()
			select {
			case <-pc.done:
				continue
			case <-ctx.Done():
				return 0, fmt.Errorf("raylet: pull %s: %w", id, context.Cause(ctx))
			}
		}
		if pc == nil {
			// A transfer seals before it leaves inflight, so this sees it.
			if off, _, ok := r.store.Lookup(id); ok {
				st.mu.Unlock()
				return off, nil
			}
			var err error
			if pc, err = st.start(id, from, size); err != nil {
				st.mu.Unlock()
				return 0, fmt.Errorf("raylet: pull %s: %w", id, err)
			}
		}
		pc.waiters++
		st.mu.Unlock()

		select {
		case <-pc.done:
			if pc.err != nil {
				return 0, fmt.Errorf("raylet: pull %s from %s: %w", id, from, pc.err)
			}
			return pc.off, nil
		case <-ctx.Done():
			st.mu.Lock()
			pc.waiters--
			last := pc.waiters == 0
			if last {
				pc.abandoned = true
			}
			st.mu.Unlock()
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

// start launches the transfer of id; st.mu is held.
func (st *xferState) start(id ids.ObjectID, from string, size int64) (*pullCall, error) {
	r := st.r
	r.mu.Lock()
	if r.closed || st.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	r.procs.Add(1) // Close waits for the transfer: it writes into the arena
	r.mu.Unlock()
	ctx, cancel := context.WithCancelCause(st.ctx)
	pc := &pullCall{done: make(chan struct{}), cancel: cancel}
	st.inflight[id] = pc
	go func() {
		defer r.procs.Done()
		off, secondary, err := st.transfer(ctx, pc, id, from, size)
		st.mu.Lock()
		if err == nil && secondary {
			st.pulled[id] = st.order.PushBack(id)
		}
		delete(st.inflight, id)
		pc.off, pc.err = off, err
		close(pc.done)
		st.mu.Unlock()
		cancel(nil)
	}()
	return pc, nil
}

// transfer copies the object; secondary is false when it turned out to be
// in the store already (created here meanwhile, not by a pull).
func (st *xferState) transfer(ctx context.Context, pc *pullCall, id ids.ObjectID, from string, size int64) (off int64, secondary bool, err error) {
	r := st.r
	src, link, err := st.dial(ctx, from)
	if err != nil {
		return 0, false, err
	}
	off, err = st.create(ctx, id, size)
	if errors.Is(err, objstore.ErrExists) {
		if off, _, ok := r.store.Lookup(id); ok {
			return off, false, nil
		}
	}
	if err != nil {
		return 0, false, err
	}
	defer func() {
		if err != nil {
			pc.abort(err)
			_, _ = r.store.Delete(id)
		}
	}()
	dst, err := r.arena.Slice(off, size)
	if err != nil {
		return 0, false, err
	}
	defer r.prefault(off, size)()
	n := int((size + pullChunk - 1) / pullChunk)
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
			return 0, false, fmt.Errorf("%w: connection to %s: %w", ErrObjectLost, from, broken)
		}
		if _, link, err = st.dial(ctx, from); err != nil {
			return 0, false, err
		}
	}
	if err := r.store.Seal(id); err != nil {
		return 0, false, fmt.Errorf("raylet: seal pulled object: %w", err)
	}
	st.bytesIn.Add(size)
	if r.metrics != nil {
		r.metrics.BytesIn.Add(float64(size))
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
func (r *Raylet) prefault(off, size int64) (stop func()) {
	const page, step = 4096, 4 << 20
	start := off &^ (page - 1)
	end := min((off+size+page-1)&^(page-1), r.arena.Capacity()&^(page-1))
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := end; p > start && !stopped.Load(); p -= step {
			from := max(p-step, start)
			b, err := r.arena.Slice(from, p-from)
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
			off := int64(i) * pullChunk
			d := &chunkDst{key: chunkKey{id, off}, i: i, pc: pc, dst: dst[off : off+min(pullChunk, size-off)]}
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
				return nil, nil, fmt.Errorf("%w: %s", ErrObjectLost, re.Msg)
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
func (st *xferState) dial(ctx context.Context, addr string) (*sourceConn, *pullLink, error) {
	st.mu.Lock()
	s := st.sources[addr]
	if s == nil {
		s = &sourceConn{sem: make(chan struct{}, 1), slots: make(chan struct{}, pullDepth)}
		st.sources[addr] = s
	}
	st.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, context.Cause(ctx)
	}
	defer func() { <-s.sem }()
	st.mu.Lock()
	l := s.link
	st.mu.Unlock()
	if l != nil && l.conn.Err() == nil {
		return s, l, nil
	}
	dctx, cancel := context.WithTimeout(ctx, pullDialTimeout)
	defer cancel()
	l, err := dialSource(dctx, addr, st.r.cfg.Token, rpc.HandlerFunc(st.handleSource))
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, nil, context.Cause(ctx)
		case errors.Is(err, rpc.ErrBadToken):
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: source unreachable: %w", ErrObjectLost, err)
	}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		_ = l.conn.Close()
		return nil, nil, ErrClosed
	}
	s.link = l
	st.mu.Unlock()
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

// handleSource serves what a source raylet sends on a pull connection: the
// notice that objects pulled from it were freed there.
func (st *xferState) handleSource(c *rpc.Conn, m rpc.Method, kind rpc.Kind, id uint64, body []byte) {
	if m != rpc.MFreeObjects || kind != rpc.KindNotify {
		if kind == rpc.KindRequest {
			_ = c.ReplyError(id, errNotPull)
		}
		return
	}
	req := &pb.ObjectIDs{}
	if unmarshal(body, req) != nil {
		return
	}
	list := objectIDs(req)
	// A transfer of one of them stops writing before its object goes.
	st.abortPulls(list, fmt.Errorf("%w: freed at the source while being pulled", ErrObjectLost))
	st.r.FreeObjects(list)
}

// abortPulls stops the transfers of list in flight.
func (st *xferState) abortPulls(list []ids.ObjectID, cause error) {
	var calls []*pullCall
	st.mu.Lock()
	for _, id := range list {
		if pc := st.inflight[id]; pc != nil {
			calls = append(calls, pc)
		}
	}
	st.mu.Unlock()
	for _, pc := range calls {
		pc.abort(cause)
	}
}

// create makes room for a pulled object, evicting older pulled copies
// that no local process is reading (pinned) while the store is full, then
// spilling primaries. A copy that a process of this node pulled, and
// may still have mapped, is not evicted while that process lives: only its
// owner's free (forwarded here) removes it.
func (st *xferState) create(ctx context.Context, id ids.ObjectID, size int64) (int64, error) {
	st.createMu.Lock()
	defer st.createMu.Unlock()
	for {
		off, err := st.r.store.Create(id, size)
		if !errors.Is(err, objstore.ErrFull) {
			return off, err
		}
		// Evicted under the pins' lock, so that no reader pins it between
		// the look and the delete.
		st.mu.Lock()
		sp := st.r.spill
		sp.mu.Lock()
		e := st.order.Front()
		for e != nil && sp.pins[e.Value.(ids.ObjectID)] > 0 {
			e = e.Next() // a local process is reading it
		}
		if e != nil {
			victim := st.order.Remove(e).(ids.ObjectID)
			delete(st.pulled, victim)
			if _, derr := st.r.store.Delete(victim); derr == nil {
				st.r.log.Debug("evicted pulled copy", "object", victim.String())
			}
		}
		sp.mu.Unlock()
		st.mu.Unlock()
		if e == nil {
			// No copy left to evict: primaries spill to make room.
			return st.r.spill.create(ctx, id, size)
		}
	}
}

// isPulled reports whether id is a copy pulled from another node (which
// is evicted when room is short, never spilled).
func (st *xferState) isPulled(id ids.ObjectID) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pulled[id] != nil
}

// servePull pulls an object for a worker or driver of this node, off the
// connection's read loop.
func (r *Raylet) servePull(c *rpc.Conn, id uint64, body []byte) {
	req := &pb.PullObject{}
	if err := unmarshal(body, req); err != nil {
		_ = c.ReplyError(id, err.Error())
		return
	}
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		_ = c.ReplyError(id, err.Error())
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = c.ReplyError(id, ErrClosed.Error())
		return
	}
	r.procs.Add(2)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The requester going away, or the raylet closing, cancels it.
		defer r.procs.Done()
		select {
		case <-c.Done():
		case <-r.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	go func() {
		defer r.procs.Done()
		defer cancel()
		off, err := r.pullPinned(ctx, c, oid, req.From, req.Size)
		if err != nil {
			_ = c.Reply(id, &pb.CreateObjectReply{
				Error: err.Error(),
				Full:  errors.Is(err, objstore.ErrFull) || errors.Is(err, objstore.ErrTooLarge),
				Lost:  errors.Is(err, ErrObjectLost),
			})
			return
		}
		_ = c.Reply(id, &pb.CreateObjectReply{Offset: off})
	}()
}

// pullPinned pulls id and pins the copy for the process on c (nil: this
// one) until it unpins or goes. A copy evicted by another pull before it
// was pinned is pulled again.
func (r *Raylet) pullPinned(ctx context.Context, c *rpc.Conn, id ids.ObjectID, from string, size int64) (int64, error) {
	for {
		if _, err := r.Pull(ctx, id, from, size); err != nil {
			return 0, err
		}
		if off, ok := r.spill.pinIfHere(c, id); ok {
			return off, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("raylet: pull %s: %w", id, context.Cause(ctx))
		}
	}
}

// serveReadChunk answers a ReadChunk with the bytes of a sealed object, and
// remembers that the connection read it, to pass on its free.
func (r *Raylet) serveReadChunk(c *rpc.Conn, id uint64, body []byte) {
	req := &pb.ReadChunk{}
	if err := unmarshal(body, req); err != nil {
		_ = c.ReplyError(id, err.Error())
		return
	}
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		_ = c.ReplyError(id, err.Error())
		return
	}
	st := r.xfer()
	if st == nil {
		_ = c.ReplyError(id, ErrClosed.Error())
		return
	}
	// Recorded before the object is looked up: a free that comes between
	// the two still reaches the reader.
	st.mu.Lock()
	rs := st.readers[oid]
	if rs == nil {
		rs = make(map[*rpc.Conn]struct{}, 1)
		st.readers[oid] = rs
	}
	if _, ok := rs[c]; !ok {
		for old := range rs {
			if old.Err() != nil {
				delete(rs, old) // gone: nobody to tell
			}
		}
		rs[c] = struct{}{}
	}
	st.mu.Unlock()
	off, size, ok := r.store.Lookup(oid)
	unsealed := !ok && r.store.Unsealed(oid)
	if !ok && !unsealed {
		// Sealed between the two looks: look again.
		off, size, ok = r.store.Lookup(oid)
	}
	if unsealed {
		// Its seal has not reached this raylet yet (it comes on its
		// writer's connection, this read on another): wait for it.
		r.procs.Add(1)
		go func() {
			defer r.procs.Done()
			if r.waitSealed(oid) {
				r.serveReadChunk(c, id, body)
				return
			}
			_ = c.ReplyError(id, "raylet: object "+oid.String()+notHere)
		}()
		return
	}
	var unpin func()
	if ok {
		// Pinned until sent, so that it is not spilled meanwhile.
		r.spill.mu.Lock()
		if off2, size2, ok2 := r.store.Lookup(oid); ok2 {
			off, size = off2, size2
			r.spill.pins[oid]++
			unpin = func() { r.spill.unpinOne(oid) }
		} else {
			ok = false
		}
		r.spill.mu.Unlock()
	}
	var b []byte
	if !ok {
		// Spilled: the chunk streams from disk.
		chunk, spilled, err := r.spill.readSpilled(oid, req.Offset, req.Length)
		switch {
		case !spilled:
			_ = c.ReplyError(id, "raylet: object "+oid.String()+notHere)
			return
		case err != nil:
			_ = c.ReplyError(id, err.Error())
			return
		}
		b, unpin = chunk, func() {}
	} else {
		if req.Offset < 0 || req.Length < 0 || req.Length > rpc.MaxFrame || req.Offset > size-req.Length {
			unpin()
			_ = c.ReplyError(id, fmt.Sprintf("raylet: read chunk [%d, +%d) of object %s of %d bytes: out of range", req.Offset, req.Length, oid, size))
			return
		}
		var err error
		if b, err = r.arena.View(off+req.Offset, req.Length); err != nil {
			unpin()
			_ = c.ReplyError(id, err.Error())
			return
		}
	}
	st.served.Add(1)
	st.bytesOut.Add(int64(len(b)))
	if st.r.metrics != nil {
		st.r.metrics.BytesOut.Add(float64(len(b)))
	}
	st.mu.Lock()
	cs := st.senders[c]
	if cs == nil {
		cs = &chunkSender{}
		st.senders[c] = cs
	}
	cs.queue = append(cs.queue, chunkReply{id, b, unpin})
	start := !cs.running
	cs.running = true
	st.mu.Unlock()
	if start && !r.goTracked(func() { st.sendChunks(c, cs) }) {
		unpin()
		_ = c.ReplyError(id, ErrClosed.Error())
	}
}

// chunkSender sends the chunks a connection asked for, off its read loop.
type chunkSender struct {
	queue   []chunkReply // guarded by xferState.mu
	running bool         // sendChunks runs; guarded by xferState.mu
}

// chunkReply is a chunk to send: the reply to request id; sent, once
// its bytes may go.
type chunkReply struct {
	id   uint64
	b    []byte
	sent func()
}

// sendChunks replies to the queued chunk requests of c in order. Each
// reply goes from the store's memory to the socket without a copy (see
// rpc.Conn's direct frames).
func (st *xferState) sendChunks(c *rpc.Conn, cs *chunkSender) {
	for {
		st.mu.Lock()
		if len(cs.queue) == 0 {
			cs.running = false
			delete(st.senders, c)
			st.mu.Unlock()
			return
		}
		next := cs.queue[0]
		cs.queue = cs.queue[1:]
		st.mu.Unlock()
		_ = c.ReplyRaw(next.id, next.b)
		next.sent()
	}
}

// goTracked runs f on a goroutine that Close waits for, unless the raylet
// is closed.
func (r *Raylet) goTracked(f func()) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.procs.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.procs.Done()
		f()
	}()
	return true
}

// forwardFree tells the nodes that read objects of list from this one to
// free their copies, and forgets these objects' pulled copies here.
func (r *Raylet) forwardFree(list []ids.ObjectID) {
	v, ok := xferStates.Load(r)
	if !ok {
		return
	}
	st := v.(*xferState)
	// A pull in flight here stops writing: its object was just deleted.
	st.abortPulls(list, fmt.Errorf("%w: freed while being pulled", ErrObjectLost))
	byConn := make(map[*rpc.Conn][]ids.ObjectID)
	st.mu.Lock()
	for _, id := range list {
		if e := st.pulled[id]; e != nil {
			st.order.Remove(e)
			delete(st.pulled, id)
		}
		for c := range st.readers[id] {
			byConn[c] = append(byConn[c], id)
		}
		// Forgotten at once, so a free coming back round a chain of
		// pulls stops here.
		delete(st.readers, id)
	}
	st.mu.Unlock()
	for c, objs := range byConn {
		if c.Err() == nil {
			_ = c.Notify(rpc.MFreeObjects, idList(objs))
		}
	}
}

// The puller's side of a pull connection places the bytes of each chunk
// straight into the object being pulled, without an intermediate buffer:
// rpc.Conn reads every frame body into a new slice, which for a transfer
// costs an allocation, its zeroing, garbage collection and a second copy
// per byte, about as much as the network itself. chunkConn sits between
// the socket and the rpc.Conn and follows the framing (see package rpc):
// it notes the request ID of each ReadChunk the rpc.Conn writes, and when
// the reply to one comes, reads its body into the object and hands the
// rpc.Conn the frame with an empty body instead. Every other frame passes
// through unchanged.

// Frame layout, from package rpc.
const (
	frameHeader = 14 // uint32 length of the rest, method, kind, uint64 id
	frameLenLen = 4  // the length field, not counted in the length
)

// placePiece is how much of a chunk is read into the store at a time; an
// abort waits for at most one piece.
const placePiece = 512 << 10

// placeStall is how long the body of a chunk may stall before the
// connection is deemed broken.
const placeStall = 30 * time.Second

// chunkKey names one chunk of one object.
type chunkKey struct {
	id  ids.ObjectID
	off int64
}

// chunkDst is where the bytes of one chunk go.
type chunkDst struct {
	key    chunkKey
	i      int
	pc     *pullCall
	dst    []byte
	reqID  uint64 // the request's ID, once written; guarded by chunkConn.mu
	bound  bool   // reqID is set; guarded by chunkConn.mu
	placed bool   // the bytes are in dst; set by the read loop before the reply's callback
}

// land accepts the reply to the chunk's request: the bytes are in place
// already, or (if the reply was not recognized) in body.
func (d *chunkDst) land(body []byte) error {
	d.pc.wmu.Lock()
	defer d.pc.wmu.Unlock()
	switch {
	case d.pc.aborted != nil:
		return d.pc.aborted
	case d.placed:
		return nil
	case len(body) != len(d.dst):
		return fmt.Errorf("raylet: read chunk at %d: got %d bytes, want %d", d.key.off, len(body), len(d.dst))
	}
	copy(d.dst, body)
	return nil
}

// chunkConn is the net.Conn under a puller's rpc.Conn.
type chunkConn struct {
	net.Conn

	mu   sync.Mutex // protects want, byID and the chunkDsts' reqID and bound
	want map[chunkKey]*chunkDst
	byID map[uint64]*chunkDst

	wmu   sync.Mutex // protects the write side's parsing state
	wpart []byte     // a partly written frame header (and ReadChunk body)
	wskip int        // body bytes of the frame being written still to skip

	// The read side, used by the rpc.Conn's read loop alone.
	hdr     [frameHeader]byte
	out     []byte // bytes for the rpc.Conn before reading on
	pass    int64  // body bytes of the current frame still to pass on
	discard []byte // sink for the bytes of an aborted pull
}

func newChunkConn(nc net.Conn) *chunkConn {
	return &chunkConn{Conn: nc, want: make(map[chunkKey]*chunkDst), byID: make(map[uint64]*chunkDst)}
}

// expect registers d before its request is sent.
func (c *chunkConn) expect(d *chunkDst) {
	c.mu.Lock()
	c.want[d.key] = d
	c.mu.Unlock()
}

// forget unregisters ds: their replies, if they still come, pass through.
func (c *chunkConn) forget(ds []*chunkDst) {
	c.mu.Lock()
	for _, d := range ds {
		if c.want[d.key] == d {
			delete(c.want, d.key)
		}
		if d.bound && c.byID[d.reqID] == d {
			delete(c.byID, d.reqID)
		}
	}
	c.mu.Unlock()
}

// Write notes the IDs of the ReadChunk requests in b, then writes it.
func (c *chunkConn) Write(b []byte) (int, error) {
	c.scan(b)
	return c.Conn.Write(b)
}

// scan follows the frames of the outgoing stream; b may start or end in
// the middle of one.
func (c *chunkConn) scan(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	const maxRequest = 256 // a ReadChunk request is far smaller
	for len(b) > 0 {
		if c.wskip > 0 {
			k := min(len(b), c.wskip)
			b, c.wskip = b[k:], c.wskip-k
			continue
		}
		need := frameHeader
		if len(c.wpart) >= frameHeader {
			need += frameBody(c.wpart)
		}
		k := min(len(b), need-len(c.wpart))
		c.wpart, b = append(c.wpart, b[:k]...), b[k:]
		if len(c.wpart) < frameHeader {
			continue
		}
		n := frameBody(c.wpart)
		if rpc.Method(c.wpart[4]) != rpc.MReadChunk || rpc.Kind(c.wpart[5]) != rpc.KindRequest || n > maxRequest {
			c.wskip = n - (len(c.wpart) - frameHeader)
			c.wpart = c.wpart[:0]
			continue
		}
		if len(c.wpart) < frameHeader+n {
			continue
		}
		c.bind(binary.BigEndian.Uint64(c.wpart[6:14]), c.wpart[frameHeader:])
		c.wpart = c.wpart[:0]
	}
}

// frameBody is the body length in a frame header, or 0 if malformed.
func frameBody(h []byte) int {
	n := int(binary.BigEndian.Uint32(h[0:4])) - (frameHeader - frameLenLen)
	return max(n, 0)
}

// bind ties the request id to the chunk its body asks for.
func (c *chunkConn) bind(id uint64, body []byte) {
	req := &pb.ReadChunk{}
	if proto.Unmarshal(body, req) != nil {
		return
	}
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.want[chunkKey{oid, req.Offset}]
	if d == nil || int64(len(d.dst)) != req.Length {
		return
	}
	delete(c.want, d.key)
	d.reqID, d.bound = id, true
	c.byID[id] = d
}

// Read gives the rpc.Conn the incoming stream, less the bodies of chunks
// placed in the store.
func (c *chunkConn) Read(p []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.pass > 0 {
			if int64(len(p)) > c.pass {
				p = p[:c.pass]
			}
			n, err := c.Conn.Read(p)
			c.pass -= int64(n)
			return n, err
		}
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
}

// nextFrame reads a frame header and, for the reply to a chunk request,
// the body into the store.
func (c *chunkConn) nextFrame() error {
	h := c.hdr[:]
	if _, err := io.ReadFull(c.Conn, h); err != nil {
		return err
	}
	c.out = h
	n := int64(binary.BigEndian.Uint32(h[0:4])) - (frameHeader - frameLenLen)
	if n <= 0 {
		return nil // empty, or malformed: the rpc.Conn will say so
	}
	c.pass = n
	id := binary.BigEndian.Uint64(h[6:14])
	c.mu.Lock()
	d := c.byID[id]
	delete(c.byID, id)
	c.mu.Unlock()
	if d == nil || rpc.Kind(h[5]) != rpc.KindReply || int64(len(d.dst)) != n {
		return nil
	}
	if err := c.place(d); err != nil {
		return err
	}
	c.pass = 0
	binary.BigEndian.PutUint32(h[0:4], frameHeader-frameLenLen) // no body
	return nil
}

// place reads the body of d's reply into d.dst, piece by piece, unless the
// pull is aborted meanwhile.
func (c *chunkConn) place(d *chunkDst) error {
	_ = c.Conn.SetReadDeadline(time.Now().Add(placeStall))
	defer func() { _ = c.Conn.SetReadDeadline(time.Time{}) }()
	aborted := false
	for off := 0; off < len(d.dst); off += placePiece {
		piece := d.dst[off:min(off+placePiece, len(d.dst))]
		d.pc.wmu.Lock()
		if d.pc.aborted != nil {
			aborted = true
			if c.discard == nil {
				c.discard = make([]byte, placePiece)
			}
			piece = c.discard[:len(piece)]
		}
		_, err := io.ReadFull(c.Conn, piece)
		d.pc.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	d.placed = !aborted
	return nil
}
