package transfer

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

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
