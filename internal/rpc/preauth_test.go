package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// tokenServer serves echo on loopback TCP, wanting token "s3cret".
func tokenServer(t *testing.T) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	srv.RequireToken("s3cret")
	t.Cleanup(func() { _ = srv.Close() })
	return srv, ln.Addr().String()
}

// frameHeader is the header of a frame whose body is n bytes.
func frameHeader(n uint32, m Method, kind Kind, id uint64) []byte {
	h := make([]byte, headerLen)
	binary.BigEndian.PutUint32(h[0:4], n+headerLen-4)
	h[4], h[5] = byte(m), byte(kind)
	binary.BigEndian.PutUint64(h[6:14], id)
	return h
}

// closedByPeer reads from nc until the server closes it, failing the test
// if that takes longer than within.
func closedByPeer(t *testing.T, nc net.Conn, within time.Duration) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", within)
	}
}

// TestPreAuthFramesAreSmall: before Hello, a frame announcing a large body
// closes the connection at once, before the server reads (or allocates)
// the body.
func TestPreAuthFramesAreSmall(t *testing.T) {
	_, addr := tokenServer(t)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(frameHeader(64<<20, MHello, KindRequest, 1)); err != nil {
		t.Fatal(err)
	}
	closedByPeer(t, nc, 5*time.Second)
}

// TestPreAuthRepliesClose: a reply (or error) frame before Hello closes
// the connection; it used to keep it open.
func TestPreAuthRepliesClose(t *testing.T) {
	_, addr := tokenServer(t)
	for _, kind := range []Kind{KindReply, KindError, KindNotify} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(append(frameHeader(3, mEcho, kind, 7), "abc"...)); err != nil {
			t.Fatal(err)
		}
		closedByPeer(t, nc, 5*time.Second)
		nc.Close()
	}
}

// TestHandshakeDeadline: a peer that connects and says nothing is
// dropped when the handshake time is up; one that says the token in time
// keeps its connection past it.
func TestHandshakeDeadline(t *testing.T) {
	srv, addr := tokenServer(t)
	srv.SetHandshakeTimeout(500 * time.Millisecond)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx := context.Background()
	good, err := DialToken(ctx, "tcp:"+addr, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	closedByPeer(t, silent, 10*time.Second)
	// The authenticated one is past the deadline too, and still served,
	// with frames larger than the pre-auth limit.
	big := string(make([]byte, 2*MaxPreAuthFrame))
	resp := &pb.Status{}
	if err := good.Call(ctx, mEcho, &pb.Status{Error: big}, resp); err != nil || len(resp.Error) != len(big) {
		t.Fatalf("after the handshake time: %v", err)
	}
}

// TestPendingConnectionsAreCapped: past the cap of connections still to
// present the token from one host, new ones are closed at once; those
// that authenticate stop counting, and one that leaves frees its place.
func TestPendingConnectionsAreCapped(t *testing.T) {
	srv, addr := tokenServer(t)
	srv.SetPendingLimits(100, 3)
	var silent []net.Conn
	for range 3 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		silent = append(silent, nc)
	}
	// The server may not have accepted the three yet: a fourth is refused
	// once it has. Each try is a new connection, closed at once or kept.
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := DialToken(ctx, "tcp:"+addr, "s3cret", nil)
		if err != nil {
			break // refused: the three silent ones fill the cap
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("a fourth connection from the same host was served while three had not authenticated")
		}
	}
	// One leaves: a new peer gets in and, authenticated, stops counting.
	silent[0].Close()
	deadline = time.Now().Add(10 * time.Second)
	var good []*Conn
	for len(good) < 2 {
		c, err := DialToken(ctx, "tcp:"+addr, "s3cret", nil)
		if err == nil {
			defer c.Close()
			good = append(good, c)
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a silent peer left, %d authenticated connections got in: %v", len(good), err)
		}
	}
}
