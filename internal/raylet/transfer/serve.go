package transfer

import (
	"context"
	"errors"
	"fmt"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ServeReadChunk answers a ReadChunk (rpc.HandleRaw) with the bytes of a
// sealed object, and remembers that the connection read it, to pass on
// its free.
func (m *Manager) ServeReadChunk(ctx context.Context, req *pb.ReadChunk, reply func([]byte, error)) {
	c := rpc.ConnOf(ctx)
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, err)
		return
	}
	// Recorded before the object is looked up: a free that comes between
	// the two still reaches the reader.
	m.mu.Lock()
	rs := m.readers[oid]
	if rs == nil {
		rs = make(map[*rpc.Conn]struct{}, 1)
		m.readers[oid] = rs
	}
	if _, ok := rs[c]; !ok {
		for old := range rs {
			if old.Err() != nil {
				delete(rs, old) // gone: nobody to tell
			}
		}
		rs[c] = struct{}{}
	}
	m.mu.Unlock()
	_, _, ok := m.cfg.Store.Lookup(oid)
	if !ok && m.cfg.Store.Unsealed(oid) {
		// Its seal has not reached this raylet yet (it comes on its
		// writer's connection, this read on another): wait for it.
		if !m.cfg.Go(func() {
			if m.cfg.Host.WaitSealed(oid) {
				m.ServeReadChunk(ctx, req, reply)
				return
			}
			reply(nil, errors.New("raylet: object "+oid.String()+notHere))
		}) {
			reply(nil, m.cfg.ErrClosed)
		}
		return
	}
	b, unpin, err := m.readChunk(oid, req)
	if err != nil {
		reply(nil, err)
		return
	}
	m.served.Add(1)
	m.bytesOut.Add(int64(len(b)))
	if m.cfg.Metrics != nil {
		m.cfg.Metrics.BytesOut.Add(float64(len(b)))
	}
	m.mu.Lock()
	cs := m.senders[c]
	if cs == nil {
		cs = &chunkSender{}
		m.senders[c] = cs
	}
	cs.queue = append(cs.queue, chunkReply{reply, b, unpin})
	start := !cs.running
	cs.running = true
	m.mu.Unlock()
	if start && !m.cfg.Go(func() { m.sendChunks(c, cs) }) {
		unpin()
		reply(nil, m.cfg.ErrClosed)
	}
}

// readChunk is the chunk req asks for of sealed object oid: from memory,
// pinned until unpin so that it is not spilled while it is sent, or from
// disk.
func (m *Manager) readChunk(oid ids.ObjectID, req *pb.ReadChunk) (b []byte, unpin func(), err error) {
	off, size, unpin, ok := m.cfg.Host.PinInMemory(oid)
	if !ok {
		// Spilled: the chunk streams from disk.
		chunk, spilled, err := m.cfg.Host.ReadSpilled(oid, req.Offset, req.Length)
		switch {
		case !spilled:
			return nil, nil, errors.New("raylet: object " + oid.String() + notHere)
		case err != nil:
			return nil, nil, err
		}
		return chunk, func() {}, nil
	}
	if req.Offset < 0 || req.Length < 0 || req.Length > rpc.MaxFrame || req.Offset > size-req.Length {
		unpin()
		return nil, nil, fmt.Errorf("raylet: read chunk [%d, +%d) of object %s of %d bytes: out of range", req.Offset, req.Length, oid, size)
	}
	if b, err = m.cfg.Arena.View(off+req.Offset, req.Length); err != nil {
		unpin()
		return nil, nil, err
	}
	return b, unpin, nil
}

// chunkSender sends the chunks a connection asked for, off its read loop.
type chunkSender struct {
	queue   []chunkReply // guarded by Manager.mu
	running bool         // sendChunks runs; guarded by Manager.mu
}

// chunkReply is a chunk to send with reply; sent, once its bytes may go.
type chunkReply struct {
	reply func([]byte, error)
	b     []byte
	sent  func()
}

// sendChunks replies to the queued chunk requests of c in order. Each
// reply goes from the store's memory to the socket without a copy (see
// rpc.Conn's direct frames).
func (m *Manager) sendChunks(c *rpc.Conn, cs *chunkSender) {
	for {
		m.mu.Lock()
		if len(cs.queue) == 0 {
			cs.running = false
			delete(m.senders, c)
			m.mu.Unlock()
			return
		}
		next := cs.queue[0]
		cs.queue = cs.queue[1:]
		m.mu.Unlock()
		next.reply(next.b, nil)
		next.sent()
	}
}

// Freed tells the nodes that read objects of list from this one to free
// their copies, and forgets these objects' pulled copies here: list was
// just deleted from the store.
func (m *Manager) Freed(list []ids.ObjectID) {
	// A pull in flight here stops writing: its object was just deleted.
	m.abortPulls(list, fmt.Errorf("%w: freed while being pulled", objstore.ErrObjectLost))
	byConn := make(map[*rpc.Conn][]ids.ObjectID)
	m.mu.Lock()
	for _, id := range list {
		if e := m.pulled[id]; e != nil {
			m.order.Remove(e)
			delete(m.pulled, id)
		}
		for c := range m.readers[id] {
			byConn[c] = append(byConn[c], id)
		}
		// Forgotten at once, so a free coming back round a chain of
		// pulls stops here.
		delete(m.readers, id)
	}
	m.mu.Unlock()
	for c, objs := range byConn {
		if c.Err() == nil {
			_ = c.Notify(rpc.MFreeObjects, idList(objs))
		}
	}
}

// idList is list as the protocol carries it.
func idList(list []ids.ObjectID) *pb.ObjectIDs {
	m := &pb.ObjectIDs{Ids: make([][]byte, len(list))}
	for i := range list {
		m.Ids[i] = list[i][:]
	}
	return m
}

// objectIDs is a list of object IDs as received, malformed ones left out.
func objectIDs(req *pb.ObjectIDs) []ids.ObjectID {
	list := make([]ids.ObjectID, 0, len(req.Ids))
	for _, b := range req.Ids {
		if oid, err := ids.ObjectIDFrom(b); err == nil {
			list = append(list, oid)
		}
	}
	return list
}
