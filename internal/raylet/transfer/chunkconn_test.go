package transfer

import (
	"encoding/binary"
	"net"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// discardConn is a net.Conn that takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }

func TestChunkConnFollowsFramesSplitAnywhere(t *testing.T) {
	// Frames as an rpc.Conn writes them: a notification, a ReadChunk
	// request, and a large reply, in one stream.
	frame := func(m rpc.Method, kind rpc.Kind, id uint64, body []byte) []byte {
		f := make([]byte, frameHeader, frameHeader+len(body))
		binary.BigEndian.PutUint32(f[0:4], uint32(frameHeader-frameLenLen+len(body)))
		f[4], f[5] = byte(m), byte(kind)
		binary.BigEndian.PutUint64(f[6:14], id)
		return append(f, body...)
	}
	oid := ids.ForPut()
	req, err := proto.Marshal(&pb.ReadChunk{ObjectId: oid[:], Offset: 3 * ChunkSize, Length: 100})
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	stream = append(stream, frame(rpc.MFreeObjects, rpc.KindNotify, 0, make([]byte, 300))...)
	stream = append(stream, frame(rpc.MReadChunk, rpc.KindRequest, 42, req)...)
	stream = append(stream, frame(rpc.MReadChunk, rpc.KindReply, 7, make([]byte, 1000))...)
	for _, step := range []int{1, 2, 3, 13, 14, 15, 64, len(stream)} {
		c := newChunkConn(discardConn{})
		d := &chunkDst{key: chunkKey{oid, 3 * ChunkSize}, dst: make([]byte, 100)}
		c.expect(d)
		for i := 0; i < len(stream); i += step {
			if _, err := c.Write(stream[i:min(i+step, len(stream))]); err != nil {
				t.Fatal(err)
			}
		}
		if c.byID[42] != d || len(c.want) != 0 {
			t.Errorf("writes of %d bytes: request 42 not tied to its chunk (byID %v, want %v)", step, c.byID, c.want)
		}
		if len(c.wpart) != 0 || c.wskip != 0 {
			t.Errorf("writes of %d bytes: stream not at a frame boundary at its end", step)
		}
	}
}
