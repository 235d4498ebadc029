package gcs

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// backends runs f once per storage backend. Each call of the config
// function it gets returns a Config on the same storage, so a second
// server finds what the first left.
func backends(t *testing.T, f func(t *testing.T, storage func() Config)) {
	t.Run("memory", func(t *testing.T) {
		st := NewMemoryStore()
		f(t, func() Config { return Config{Store: st} })
	})
	t.Run("redis", func(t *testing.T) {
		addr := redistest.Start(t)
		f(t, func() Config { return Config{RedisAddress: addr} })
	})
}

// serve starts a control store with cfg (token "tok") on a loopback port.
func serve(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Token = "tok"
	s, err := Serve(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, "tcp:" + ln.Addr().String()
}

func dial(t *testing.T, addr string) *rpc.Conn {
	t.Helper()
	c, err := rpc.DialToken(context.Background(), addr, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func call(t *testing.T, c *rpc.Conn, m rpc.Method, req, resp proto.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, m, req, resp); err != nil {
		t.Fatalf("method %d: %v", m, err)
	}
}

// registerNode registers id at nodeAddr on c.
func registerNode(t *testing.T, c *rpc.Conn, id ids.NodeID, nodeAddr string) {
	t.Helper()
	call(t, c, rpc.MRegisterNode, &pb.NodeInfo{
		NodeId: id[:], Address: nodeAddr, Resources: []*pb.Resource{{Name: "CPU", Quantity: 2}},
	}, &pb.Status{})
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// chunks cuts data into pieces of at most size bytes, in the order given
// by order (indexes into the pieces; nil: in order).
func chunks(hash string, data []byte, size int, order []int) []*pb.BinaryChunk {
	var all []*pb.BinaryChunk
	for off := 0; off < len(data); off += size {
		end := min(off+size, len(data))
		all = append(all, &pb.BinaryChunk{Hash: hash, Offset: int64(off), Data: data[off:end], Size: int64(len(data))})
	}
	if order == nil {
		return all
	}
	out := make([]*pb.BinaryChunk, len(order))
	for i, k := range order {
		out[i] = all[k]
	}
	return out
}

// putChunks uploads chunks and returns the error of each reply.
func putChunks(t *testing.T, c *rpc.Conn, chs []*pb.BinaryChunk) []string {
	t.Helper()
	var errs []string
	for _, ch := range chs {
		st := &pb.Status{}
		call(t, c, rpc.MPutBinary, ch, st)
		errs = append(errs, st.Error)
	}
	return errs
}

// download reads a stored binary in pieces of step bytes.
func download(t *testing.T, c *rpc.Conn, hash string, size, step int64) []byte {
	t.Helper()
	var out []byte
	for off := int64(0); off < size; {
		b, err := c.CallRaw(context.Background(), rpc.MGetBinary, &pb.GetBinary{Hash: hash, Offset: off, Length: step})
		if err != nil {
			t.Fatalf("get binary at %d: %v", off, err)
		}
		if len(b) == 0 {
			t.Fatalf("get binary at %d: no bytes", off)
		}
		out = append(out, b...)
		off += int64(len(b))
	}
	return out
}

// rawClient speaks the framed protocol byte by byte, to send what
// rpc.Conn never would.
type rawClient struct {
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(addr, "tcp:"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawClient{nc: nc, r: bufio.NewReader(nc)}
	hello, _ := proto.Marshal(&pb.Status{Error: "tok"})
	if kind, body := rc.request(t, rpc.MHello, 1, hello); kind != rpc.KindReply {
		t.Fatalf("hello: kind %d: %s", kind, body)
	}
	return rc
}

// request sends one request frame and reads the reply.
func (rc *rawClient) request(t *testing.T, m rpc.Method, id uint64, body []byte) (rpc.Kind, []byte) {
	t.Helper()
	frame := make([]byte, 14, 14+len(body))
	binary.BigEndian.PutUint32(frame[0:4], uint32(10+len(body)))
	frame[4], frame[5] = byte(m), byte(rpc.KindRequest)
	binary.BigEndian.PutUint64(frame[6:14], id)
	if _, err := rc.nc.Write(append(frame, body...)); err != nil {
		t.Fatalf("write: %v", err)
	}
	var hdr [14]byte
	if _, err := io.ReadFull(rc.r, hdr[:]); err != nil {
		t.Fatalf("method %d: read reply: %v", m, err)
	}
	if got := binary.BigEndian.Uint64(hdr[6:14]); got != id {
		t.Fatalf("method %d: reply to %d, want %d", m, got, id)
	}
	reply := make([]byte, binary.BigEndian.Uint32(hdr[0:4])-10)
	if _, err := io.ReadFull(rc.r, reply); err != nil {
		t.Fatalf("method %d: read reply body: %v", m, err)
	}
	return rpc.Kind(hdr[5]), reply
}

// remoteErr is the message of an error reply, or "".
func remoteErr(err error) string {
	var re *rpc.RemoteError
	if errors.As(err, &re) {
		return re.Msg
	}
	return ""
}

// startJobWithExe uploads exe through c in 64,000-byte chunks, sent in
// order (nil: first to last), and starts job-1 of node nodeID running it.
func startJobWithExe(t *testing.T, c *rpc.Conn, nodeID ids.NodeID, exe []byte, order []int) {
	t.Helper()
	hash := sha(exe)
	for i, e := range putChunks(t, c, chunks(hash, exe, 64_000, order)) {
		if e != "" {
			t.Fatalf("chunk %d: %s", i, e)
		}
	}
	st := &pb.Status{}
	call(t, c, rpc.MJobStarted, &pb.JobInfo{JobId: "job-1", Exe: "/bin/app", ExeHash: hash, ExeSize: int64(len(exe)), NodeId: nodeID[:]}, st)
	if st.Error != "" {
		t.Fatal(st.Error)
	}
}
