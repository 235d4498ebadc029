package raylet

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/objstore/spill"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Object spilling and pins.
//
// The primary copies of objects (those put or returned on this node, as
// opposed to copies pulled from other nodes) can move to disk: when the
// store passes its high-water mark, a spill pass writes the oldest ones
// that nobody pins to the spill folder (internal/objstore/spill, which
// fuses small objects into large files and writes with several writers)
// and frees their memory. A process that reads an object in the store
// first pins it (MPinObject): the raylet restores a spilled object into
// memory and answers with its offset, and does not spill or move it until
// the process unpins it (MUnpinObjects) or goes away. So a locator's
// offset is only a hint: the pin's reply says where the object is now.
//
// A Create that does not fit waits while spilling can make room, and is
// refused with objstore.ErrFull (naming the folder and its usage) when it
// cannot: every object pinned, or the disk past its threshold.

const (
	// spillHigh is the fraction of the store past which primaries spill.
	spillHigh = 0.8
	// spillLow is where a spill pass stops, so passes come in batches.
	spillLow = 0.7
	// spillBatch bounds the bytes of one Spill call, so that the memory
	// of the first objects is freed before the last are written.
	spillBatch = 256 << 20
)

// spiller is a raylet's side of spilling: pins, the order in which
// primaries spill, and what is on its way to or from the disk.
type spiller struct {
	r    *Raylet
	disk *spill.Store // nil: spilling is off

	mu        sync.Mutex
	pins      map[ids.ObjectID]int
	byConn    map[*rpc.Conn]map[ids.ObjectID]int // nil key: this process
	waiting   map[*rpc.Conn]map[ids.ObjectID]int // pins being served off the read loop (restores)
	cancels   map[*rpc.Conn]map[ids.ObjectID]int // of those, how many their process gave up on
	lru       *list.List                         // primaries in memory, sealed, oldest first
	elems     map[ids.ObjectID]*list.Element
	spilling  map[ids.ObjectID]bool // being written; true once freed meanwhile
	restoring map[ids.ObjectID]*restoreCall
	creating  map[ids.ObjectID]bool // creates waiting for room; false once abandoned
	need      int64                 // bytes waiting creates ask for
	passing   bool                  // a spill pass runs
	lastErr   error                 // why the last pass could not spill
	gen       uint64                // counts changes that may give a pass something to spill
	barren    uint64                // gen+1 when a pass found nothing it could spill; 0: none did
	room      chan struct{}         // closed (and replaced) when memory was freed or a pass ended
}

// restoreCall is one restore in flight, shared by the pins that wait for it.
type restoreCall struct {
	done  chan struct{}
	err   error
	freed bool // the object was freed while it was being restored
}

func newSpiller(r *Raylet) (*spiller, error) {
	s := &spiller{
		r:         r,
		pins:      make(map[ids.ObjectID]int),
		byConn:    make(map[*rpc.Conn]map[ids.ObjectID]int),
		waiting:   make(map[*rpc.Conn]map[ids.ObjectID]int),
		cancels:   make(map[*rpc.Conn]map[ids.ObjectID]int),
		lru:       list.New(),
		elems:     make(map[ids.ObjectID]*list.Element),
		spilling:  make(map[ids.ObjectID]bool),
		restoring: make(map[ids.ObjectID]*restoreCall),
		creating:  make(map[ids.ObjectID]bool),
		room:      make(chan struct{}),
	}
	dir := r.cfg.SpillDir
	switch dir {
	case "-":
		return s, nil
	case "":
		dir = filepath.Join(r.cfg.SessionDir, "spill")
	default:
		// Nodes of one machine may share the folder: each spills into a
		// subfolder of its own.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("raylet: object spilling: %w", err)
		}
		dir = filepath.Join(dir, "node-"+r.nodeID.String()[:12])
	}
	d, err := spill.Open(spill.Config{Dir: dir, Threshold: r.cfg.SpillThreshold})
	if err != nil {
		return nil, fmt.Errorf("raylet: object spilling: %w", err)
	}
	s.disk = d
	return s, nil
}

// close removes the spill files, and the node's own folder.
func (s *spiller) close() error {
	if s.disk == nil {
		return nil
	}
	err := s.disk.Close()
	_ = os.Remove(s.disk.Dir()) // unless someone else put something there
	return err
}

// wakeLocked tells those waiting for room to look again.
func (s *spiller) wakeLocked() {
	close(s.room)
	s.room = make(chan struct{})
}

// sealed records primaries sealed by their writers: they may spill from now
// on, oldest first.
func (s *spiller) sealed(list []ids.ObjectID) {
	primary := make([]bool, len(list))
	for i, id := range list {
		primary[i] = !s.r.xfer.IsPulled(id)
	}
	s.mu.Lock() // after the transfers' lock, never before: evictions take both
	for i, id := range list {
		if !primary[i] {
			continue
		}
		if _, _, ok := s.r.store.Lookup(id); ok && s.elems[id] == nil {
			s.elems[id] = s.lru.PushBack(id)
		}
	}
	s.gen++
	s.mu.Unlock()
	s.maybeSpill()
}

// stuckLocked reports whether the last pass found nothing to spill (or
// failed) and nothing changed since: another would do the same.
func (s *spiller) stuckLocked() bool { return s.barren == s.gen+1 }

// freed forgets objects their owner freed: from memory (the caller deletes
// them from the store), from the disk, and from what is in flight.
func (s *spiller) freed(list []ids.ObjectID) {
	s.mu.Lock()
	for _, id := range list {
		if e := s.elems[id]; e != nil {
			s.lru.Remove(e)
			delete(s.elems, id)
		}
		if _, ok := s.spilling[id]; ok {
			s.spilling[id] = true
		}
		if rc := s.restoring[id]; rc != nil {
			rc.freed = true
		}
		if _, ok := s.creating[id]; ok {
			s.creating[id] = false
		}
	}
	s.wakeLocked()
	s.mu.Unlock()
	if s.disk != nil {
		for _, id := range list {
			_ = s.disk.Delete(id) // most were never spilled: ErrNotFound
		}
	}
}

// maybeSpill starts a spill pass when the store is past its high-water
// mark or creates wait for room, unless one runs.
func (s *spiller) maybeSpill() {
	if s.disk == nil {
		return
	}
	c := s.r.store.Capacity()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.passing || s.stuckLocked() || (s.need == 0 && float64(s.r.store.Used()) <= spillHigh*float64(c)) {
		return
	}
	if !s.r.goTracked(s.pass) {
		return
	}
	s.passing = true
}

// pass spills the oldest unpinned primaries until the store is down to
// its low-water mark and the waiting creates fit.
func (s *spiller) pass() {
	c := s.r.store.Capacity()
	for {
		s.mu.Lock()
		target := max(s.r.store.Used()-int64(spillLow*float64(c)), s.need)
		if target <= 0 {
			s.passing = false
			s.wakeLocked()
			s.mu.Unlock()
			return
		}
		objs, batch := s.pickLocked(target)
		if len(objs) == 0 {
			s.passing = false
			s.lastErr = nil
			s.barren = s.gen + 1
			s.wakeLocked()
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		start := time.Now()
		err := s.disk.Spill(s.r.ctx, objs)
		if m := s.r.metrics; m != nil && err == nil {
			m.SpillSeconds.Observe(time.Since(start).Seconds())
		}
		freedBytes := s.written(objs, err)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				s.r.log.Warn("object spilling failed", "objects", len(objs), "err", err)
			}
			return
		}
		s.r.log.Debug("spilled objects", "objects", len(objs), "bytes", batch, "freed", freedBytes, "took", time.Since(start))
	}
}

// pickLocked takes the oldest unpinned primaries, up to target bytes (and
// spillBatch), out of the spill order and marks them being spilled.
func (s *spiller) pickLocked(target int64) ([]spill.Object, int64) {
	var objs []spill.Object
	var batch int64
	for e := s.lru.Front(); e != nil && batch < min(target, spillBatch); {
		next := e.Next()
		id := e.Value.(ids.ObjectID)
		if s.pins[id] == 0 {
			off, size, ok := s.r.store.Lookup(id)
			b, err := s.r.arena.View(off, size)
			if ok && err == nil {
				objs = append(objs, spill.Object{ID: id, Data: b})
				batch += size
				s.spilling[id] = false
				s.lru.Remove(e)
				delete(s.elems, id)
			}
		}
		e = next
	}
	return objs, batch
}

// written settles objects whose spill ended with err: on failure they go
// back in the spill order; written ones leave memory, but those freed or
// pinned meanwhile, whose disk copies go. It returns the bytes freed in
// memory.
func (s *spiller) written(objs []spill.Object, err error) int64 {
	var drop []ids.ObjectID
	var freedBytes int64
	s.mu.Lock()
	for _, o := range objs {
		freed := s.spilling[o.ID]
		delete(s.spilling, o.ID)
		switch {
		case err != nil:
			if !freed {
				s.elems[o.ID] = s.lru.PushFront(o.ID)
			}
			s.gen++
		case freed:
			drop = append(drop, o.ID)
		case s.pins[o.ID] > 0:
			// Pinned while it was written: it stays in memory.
			drop = append(drop, o.ID)
			s.elems[o.ID] = s.lru.PushBack(o.ID)
		default:
			if n, derr := s.r.store.Delete(o.ID); derr == nil {
				freedBytes += n
			}
		}
	}
	s.lastErr = err
	s.wakeLocked()
	if err != nil {
		s.passing = false
		s.barren = s.gen + 1 // until something changes
	}
	s.mu.Unlock()
	for _, id := range drop {
		_ = s.disk.Delete(id)
	}
	return freedBytes
}

// create reserves space for a new primary, waiting while spilling makes
// room. ctx ends the wait, as does abandon (a free of id) for creates on
// behalf of another process.
func (s *spiller) create(ctx context.Context, id ids.ObjectID, size int64) (int64, error) {
	off, err := s.r.store.Create(id, size)
	if err == nil {
		s.maybeSpill()
		return off, nil
	}
	if !errors.Is(err, objstore.ErrFull) || s.disk == nil {
		return 0, err
	}
	s.mu.Lock()
	if _, ok := s.creating[id]; !ok {
		s.creating[id] = true // (serveCreate registers it first)
	}
	s.need += size
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.creating, id)
		s.need -= size
		s.mu.Unlock()
	}()
	for {
		s.maybeSpill()
		s.mu.Lock()
		room := s.room
		off, err = s.r.store.Create(id, size)
		if err == nil || !errors.Is(err, objstore.ErrFull) {
			s.mu.Unlock()
			return off, err
		}
		if !s.creating[id] {
			s.mu.Unlock()
			return 0, fmt.Errorf("raylet: create %s: abandoned by its writer", id)
		}
		if !s.passing && s.stuckLocked() && len(s.restoring) == 0 {
			// Nothing left to spill: every primary is pinned, or the disk
			// is full.
			why := s.lastErr
			s.mu.Unlock()
			return 0, s.fullError(size, err, why)
		}
		s.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", err, context.Cause(ctx))
		case <-s.r.stop:
			return 0, ErrClosed
		}
	}
}

// fullError says why an object of size bytes does not fit, with where
// spilling stands.
func (s *spiller) fullError(size int64, err, why error) error {
	st := s.disk.Stats()
	msg := fmt.Sprintf("%d bytes do not fit: the objects in memory are in use (pinned by readers or running tasks); %d objects (%d bytes) spilled to %s",
		size, st.Objects, st.LiveBytes, s.disk.Dir())
	if why != nil {
		msg = fmt.Sprintf("%d bytes do not fit and spilling to %s failed: %v", size, s.disk.Dir(), why)
	}
	return fmt.Errorf("%w; %s", err, msg)
}

// pin keeps a sealed object in memory, restoring it from disk first if it
// was spilled, for the process on c (nil: this one); it returns its
// offset and size. It fails with ErrObjectLost when the object is in
// neither place.
func (s *spiller) pin(ctx context.Context, c *rpc.Conn, id ids.ObjectID) (off, size int64, err error) {
	for {
		s.mu.Lock()
		if off, size, ok := s.r.store.Lookup(id); ok {
			s.pinLocked(c, id)
			s.mu.Unlock()
			return off, size, nil
		}
		rc := s.restoring[id]
		if rc == nil {
			if s.disk == nil {
				s.mu.Unlock()
				return 0, 0, s.notHere(id)
			}
			size, ok := s.disk.Has(id)
			if !ok {
				s.mu.Unlock()
				if s.r.store.Unsealed(id) && s.r.waitSealed(id) {
					continue // its seal was on its way
				}
				return 0, 0, s.notHere(id)
			}
			rc = &restoreCall{done: make(chan struct{})}
			s.restoring[id] = rc
			if !s.r.goTracked(func() { s.restore(id, size, rc) }) {
				delete(s.restoring, id)
				s.mu.Unlock()
				return 0, 0, ErrClosed
			}
		}
		s.mu.Unlock()
		select {
		case <-rc.done:
			if rc.err != nil {
				return 0, 0, rc.err
			}
			// Pinned like any object in memory, on the next turn.
		case <-ctx.Done():
			return 0, 0, context.Cause(ctx)
		}
	}
}

func (s *spiller) notHere(id ids.ObjectID) error {
	return fmt.Errorf("%w: object %s is not in this node's store", ErrObjectLost, id)
}

// pinIfHere pins id for the process on c if it is in memory here, and
// says where.
func (s *spiller) pinIfHere(c *rpc.Conn, id ids.ObjectID) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off, _, ok := s.r.store.Lookup(id)
	if ok {
		s.pinLocked(c, id)
	}
	return off, ok
}

func (s *spiller) pinLocked(c *rpc.Conn, id ids.ObjectID) {
	s.pins[id]++
	m := s.byConn[c]
	if m == nil {
		m = make(map[ids.ObjectID]int)
		s.byConn[c] = m
	}
	m[id]++
}

// unpin drops pins of the process on c.
func (s *spiller) unpin(c *rpc.Conn, list []ids.ObjectID) {
	s.mu.Lock()
	m := s.byConn[c]
	for _, id := range list {
		if m[id] == 0 {
			if s.waiting[c][id] > 0 {
				addCount(s.cancels, c, id, 1) // given up before it was granted
			}
			continue // not pinned by this process: ignore
		}
		m[id]--
		if m[id] == 0 {
			delete(m, id)
		}
		if s.pins[id]--; s.pins[id] <= 0 {
			delete(s.pins, id)
		}
	}
	if len(m) == 0 {
		delete(s.byConn, c)
	}
	s.gen++
	s.mu.Unlock()
	s.maybeSpill()
}

// unpinOne drops a pin the raylet itself took.
func (s *spiller) unpinOne(id ids.ObjectID) {
	s.mu.Lock()
	if s.pins[id]--; s.pins[id] <= 0 {
		delete(s.pins, id)
	}
	s.gen++
	s.mu.Unlock()
	s.maybeSpill()
}

// connGone drops every pin of a process that went away.
func (s *spiller) connGone(c *rpc.Conn) {
	s.mu.Lock()
	for id, n := range s.byConn[c] {
		if s.pins[id] -= n; s.pins[id] <= 0 {
			delete(s.pins, id)
		}
	}
	delete(s.byConn, c)
	delete(s.waiting, c)
	delete(s.cancels, c)
	s.gen++
	s.mu.Unlock()
	s.maybeSpill()
}

// addCount adds n to m[c][id], dropping entries that reach 0.
func addCount(m map[*rpc.Conn]map[ids.ObjectID]int, c *rpc.Conn, id ids.ObjectID, n int) {
	byID := m[c]
	if byID == nil {
		byID = make(map[ids.ObjectID]int)
		m[c] = byID
	}
	if byID[id] += n; byID[id] <= 0 {
		delete(byID, id)
		if len(byID) == 0 {
			delete(m, c)
		}
	}
}

// restore reads a spilled object back into memory.
func (s *spiller) restore(id ids.ObjectID, size int64, rc *restoreCall) {
	start := time.Now()
	err := func() error {
		off, err := s.create(s.r.ctx, id, size)
		if err != nil {
			return fmt.Errorf("raylet: restore %s: %w", id, err)
		}
		dst, err := s.r.arena.Slice(off, size)
		if err == nil {
			err = s.readInto(id, dst)
		}
		if err != nil {
			_ = s.r.store.Abort(id)
			return fmt.Errorf("raylet: restore %s from %s: %w", id, s.disk.Dir(), err)
		}
		if err := s.r.store.Seal(id); err != nil {
			return err
		}
		// In memory again: its disk copy goes now, before the object can
		// be picked to spill again (it is not in the spill order yet).
		_ = s.disk.Delete(id)
		return nil
	}()
	if m := s.r.metrics; m != nil && err == nil {
		m.RestoreSeconds.Observe(time.Since(start).Seconds())
	}
	s.mu.Lock()
	delete(s.restoring, id)
	freed := rc.freed
	if err == nil && !freed {
		s.elems[id] = s.lru.PushBack(id)
		s.gen++
	}
	if freed && err == nil {
		err = fmt.Errorf("raylet: object %s was freed", id)
		_, _ = s.r.store.Delete(id)
	}
	rc.err = err
	close(rc.done)
	s.wakeLocked()
	s.mu.Unlock()
	s.r.SealObjects(nil) // wakes reads waiting for a seal
}

// restoreChunk is the size of the reads of one restore, restoreReaders of
// which run at once: a large object comes back on every core.
const (
	restoreChunk   = 8 << 20
	restoreReaders = 4
)

// readInto reads a spilled object into dst, in chunks read in parallel.
func (s *spiller) readInto(id ids.ObjectID, dst []byte) error {
	if len(dst) <= restoreChunk {
		_, err := s.disk.ReadAt(id, dst, 0)
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, restoreReaders)
	next := make(chan int64)
	for range restoreReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range next {
				end := min(off+restoreChunk, int64(len(dst)))
				if _, err := s.disk.ReadAt(id, dst[off:end], off); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for off := int64(0); off < int64(len(dst)); off += restoreChunk {
		select {
		case next <- off:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err != nil {
		return err
	}
	return <-errs // nil once closed and empty
}

// readSpilled reads chunk [off, off+n) of a spilled object, for a pull
// from another node: it streams from disk without restoring.
func (s *spiller) readSpilled(id ids.ObjectID, off, n int64) ([]byte, bool, error) {
	if s.disk == nil {
		return nil, false, nil
	}
	size, ok := s.disk.Has(id)
	if !ok {
		return nil, false, nil
	}
	if off < 0 || n < 0 || n > rpc.MaxFrame || off > size-n {
		return nil, true, fmt.Errorf("raylet: read chunk [%d, +%d) of object %s of %d bytes: out of range", off, n, id, size)
	}
	b := make([]byte, n)
	if _, err := s.disk.ReadAt(id, b, off); err != nil {
		return nil, true, err
	}
	return b, true, nil
}

// SpillStats describes the node's spilling.
type SpillStats = spill.Stats

// SpillStats returns what is spilled and how spilling went; the zero value
// when spilling is off.
func (r *Raylet) SpillStats() SpillStats {
	if r.spill == nil || r.spill.disk == nil {
		return SpillStats{}
	}
	return r.spill.disk.Stats()
}

// PinObject keeps a sealed object of this node's store in memory for this
// process (the raylet's host, an embedded driver) and says where it is,
// restoring it from disk if it was spilled.
func (r *Raylet) PinObject(ctx context.Context, id ids.ObjectID) (int64, error) {
	off, _, err := r.spill.pin(ctx, nil, id)
	return off, err
}

// UnpinObjects drops pins PinObject took.
func (r *Raylet) UnpinObjects(list []ids.ObjectID) { r.spill.unpin(nil, list) }

// offLoop runs f off c's read loop, with a context that ends when c or
// the raylet closes; it reports false when the raylet is closed.
func (r *Raylet) offLoop(c *rpc.Conn, f func(ctx context.Context)) bool {
	return r.goTracked(func() {
		ctx, cancel := context.WithCancel(r.ctx)
		defer cancel()
		go func() {
			select {
			case <-c.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		f(ctx)
	})
}

// objectReply is the reply to a create or a pin.
func objectReply(off int64, err error) (*pb.CreateObjectReply, error) {
	if err != nil {
		return &pb.CreateObjectReply{Error: err.Error(), Lost: errors.Is(err, ErrObjectLost),
			Full: errors.Is(err, objstore.ErrFull) || errors.Is(err, objstore.ErrTooLarge)}, nil
	}
	return &pb.CreateObjectReply{Offset: off}, nil
}

// servePin answers an MPinObject: on the read loop when the object is in
// memory (the common case), off it when it must be restored first.
func (r *Raylet) servePin(ctx context.Context, req *pb.CreateObject, reply func(*pb.CreateObjectReply, error)) {
	c := rpc.ConnOf(ctx)
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, err)
		return
	}
	if off, ok := r.spill.pinIfHere(c, oid); ok {
		reply(objectReply(off, nil))
		return
	}
	// Registered on the read loop, so that an unpin of the process
	// giving up, read next, finds it.
	sp := r.spill
	sp.mu.Lock()
	addCount(sp.waiting, c, oid, 1)
	sp.mu.Unlock()
	if !r.offLoop(c, func(ctx context.Context) {
		off, _, err := sp.pin(ctx, c, oid)
		sp.mu.Lock()
		addCount(sp.waiting, c, oid, -1)
		cancelled := sp.cancels[c][oid] > 0
		if cancelled {
			addCount(sp.cancels, c, oid, -1)
		}
		sp.mu.Unlock()
		if err == nil && (cancelled || c.Err() != nil) {
			sp.unpin(c, []ids.ObjectID{oid}) // nobody waits for it any more
			return
		}
		reply(objectReply(off, err))
	}) {
		sp.mu.Lock()
		addCount(sp.waiting, c, oid, -1)
		sp.mu.Unlock()
		reply(nil, ErrClosed)
	}
}

// serveCreate answers an MCreateObject, off the read loop when it must
// wait for room.
func (r *Raylet) serveCreate(ctx context.Context, req *pb.CreateObject, reply func(*pb.CreateObjectReply, error)) {
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, err)
		return
	}
	c := rpc.ConnOf(ctx)
	owner := objOwner{addr: req.OwnerAddr, job: connJob(c)}
	var off int64
	if r.spilled(oid) {
		err = objstore.ErrExists // a run again of the task that made it (create.go)
	} else {
		off, err = r.store.Create(oid, req.Size)
	}
	if errors.Is(err, objstore.ErrExists) {
		if !r.offLoop(c, func(ctx context.Context) { reply(r.createExisting(ctx, c, oid, req.Size, owner)) }) {
			reply(nil, ErrClosed)
		}
		return
	}
	if err == nil || !errors.Is(err, objstore.ErrFull) || r.spill.disk == nil {
		if err == nil {
			r.creates.add(c, oid)
			r.owners.set(oid, owner)
			r.spill.maybeSpill()
		}
		reply(objectReply(off, err))
		return
	}
	// Registered on the read loop, before a free of it can be read.
	r.spill.mu.Lock()
	r.spill.creating[oid] = true
	r.spill.mu.Unlock()
	if !r.offLoop(c, func(ctx context.Context) {
		off, err := r.spill.create(ctx, oid, req.Size)
		if errors.Is(err, objstore.ErrExists) {
			reply(r.createExisting(ctx, c, oid, req.Size, owner))
			return
		}
		if err == nil {
			r.creates.add(c, oid)
			r.owners.set(oid, owner)
		}
		reply(objectReply(off, err))
	}) {
		r.spill.mu.Lock()
		delete(r.spill.creating, oid)
		r.spill.mu.Unlock()
		reply(nil, ErrClosed)
	}
}
