package rpc

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// countWrites counts the writes made to a connection.
type countWrites struct {
	net.Conn
	n atomic.Int64
}

func (c *countWrites) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// rawPeer is the far end of a Conn, driven frame by frame.
func rawPeer(t *testing.T, h Handler) (*Conn, *countWrites, net.Conn) {
	t.Helper()
	a, b := unixPair(t)
	cw := &countWrites{Conn: a}
	c := NewConn(cw, h)
	t.Cleanup(func() { _ = c.Close(); _ = b.Close() })
	return c, cw, b
}

// unixPair is a connected pair of Unix stream sockets.
func unixPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("unix", t.TempDir()+"/p.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

// readFrame reads one frame from a raw peer, within 10 seconds.
func readFrame(t *testing.T, nc net.Conn) (Kind, uint64, []byte) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [headerLen]byte
	if _, err := io.ReadFull(nc, h[:]); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(h[0:4])-(headerLen-4))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatalf("reading a reply: %v", err)
	}
	return Kind(h[5]), binary.BigEndian.Uint64(h[6:14]), body
}

// The replies a read loop's handler sends to requests that came in one
// read go out in one write, in order.
func TestRepliesToOneReadGoOutInOneWrite(t *testing.T) {
	_, cw, peer := rawPeer(t, echo)
	const n = 10
	var burst []byte
	for i := range n {
		burst = append(burst, frame(mEcho, KindRequest, uint64(i+1), []byte{byte('a' + i)})...)
	}
	if _, err := peer.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		kind, id, body := readFrame(t, peer)
		if kind != KindReply || id != uint64(i+1) || string(body) != string(rune('a'+i)) {
			t.Fatalf("reply %d: kind %d, id %d, body %q", i, kind, id, body)
		}
	}
	if w := cw.n.Load(); w != 1 {
		t.Fatalf("%d writes for %d replies to one read, want 1", w, n)
	}
}

// A reply the cork holds never waits for the rest of a frame the peer
// has only begun to send: the peer may send it only once it has the
// reply.
func TestCorkComesOffBeforeTheReadLoopWaits(t *testing.T) {
	_, _, peer := rawPeer(t, echo)
	second := frame(mEcho, KindRequest, 2, []byte("second"))
	burst := append(frame(mEcho, KindRequest, 1, []byte("first")), second[:5]...)
	if _, err := peer.Write(burst); err != nil {
		t.Fatal(err)
	}
	if _, id, body := readFrame(t, peer); id != 1 || string(body) != "first" {
		t.Fatalf("first reply: id %d, body %q", id, body)
	}
	if _, err := peer.Write(second[5:]); err != nil {
		t.Fatal(err)
	}
	if _, id, body := readFrame(t, peer); id != 2 || string(body) != "second" {
		t.Fatalf("second reply: id %d, body %q", id, body)
	}
}

// A frame with a large raw body (an object chunk) is written from the
// caller's memory at once, cork or not, after what the cork held.
func TestLargeRawFrameIsNotCorked(t *testing.T) {
	c, _, peer := rawPeer(t, nil)
	c.Cork()
	defer func() { _ = c.Uncork() }()
	if err := c.Notify(mEcho, &pb.Status{Error: "small"}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, directMin)
	big[len(big)-1] = 7
	if err := c.send(mEcho, KindNotify, 0, nil, big); err != nil {
		t.Fatal(err)
	}
	if kind, _, body := readFrame(t, peer); kind != KindNotify || len(body) >= directMin {
		t.Fatalf("first frame: kind %d, %d bytes; want the small notification", kind, len(body))
	}
	if _, _, body := readFrame(t, peer); len(body) != directMin || body[len(body)-1] != 7 {
		t.Fatalf("second frame: %d bytes, want the %d of the chunk", len(body), directMin)
	}
}
