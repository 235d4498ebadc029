package rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

const mEcho Method = 200

// echo answers mEcho with the request's error text reversed into the
// reply, and anything else with an error.
var echo = HandlerFunc(func(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	if kind != KindRequest {
		return
	}
	if m != mEcho {
		_ = c.ReplyError(id, "no such method")
		return
	}
	_ = c.send(0, KindReply, id, nil, body)
})

func pair(t *testing.T, h Handler) (*Conn, *Conn) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srvConn := make(chan *Conn, 1)
	srv := NewServer(ln, func(c *Conn) Handler { srvConn <- c; return h }, nil)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := Dial(context.Background(), sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, <-srvConn
}

func TestCallReply(t *testing.T) {
	c, _ := pair(t, echo)
	ctx := context.Background()
	req := &pb.Status{Error: "hello"}
	resp := &pb.Status{}
	if err := c.Call(ctx, mEcho, req, resp); err != nil || resp.Error != "hello" {
		t.Fatalf("echo: %v %v", resp, err)
	}
	err := c.Call(ctx, 7, req, resp)
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "no such method" {
		t.Fatalf("want remote error, got %v", err)
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	c, _ := pair(t, echo)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				want := string(rune('a'+g)) + string(rune('0'+i%10))
				resp := &pb.Status{}
				if err := c.Call(context.Background(), mEcho, &pb.Status{Error: want}, resp); err != nil || resp.Error != want {
					errs <- errors.New("mismatch: " + resp.Error + " want " + want)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	block := make(chan struct{})
	c, _ := pair(t, HandlerFunc(func(*Conn, Method, Kind, uint64, []byte) { <-block }))
	defer close(block)
	done := make(chan error, 1)
	go func() { done <- c.Call(context.Background(), mEcho, &pb.Empty{}, nil) }()
	// The call is pending once the handler holds it; closing must end it.
	time.AfterFunc(50*time.Millisecond, func() { _ = c.Close() })
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("want ErrClosed, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending call not failed by Close")
	}
}

func TestCallContextCancel(t *testing.T) {
	c, _ := pair(t, HandlerFunc(func(*Conn, Method, Kind, uint64, []byte) {}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, mEcho, &pb.Empty{}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
}

func TestMalformedFrameClosesConnection(t *testing.T) {
	for name, frame := range map[string][]byte{
		"too large":  header(MaxFrame+100, KindRequest),
		"too short":  {0, 0, 0, 1, 0},
		"bad kind":   header(0, 9),
		"truncated":  append(header(100, KindRequest), 1, 2, 3),
		"bad reply":  header(0, KindReply),
		"bad notify": append(header(3, KindNotify), 0xff, 0xff, 0xff),
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			c := NewConn(b, echo)
			go func() { _, _ = a.Write(frame); _ = a.Close() }()
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("connection survived a malformed frame")
			}
		})
	}
}

func header(bodyLen int, kind Kind) []byte {
	h := make([]byte, headerLen)
	binary.BigEndian.PutUint32(h, uint32(bodyLen+headerLen-4))
	h[4], h[5] = byte(mEcho), byte(kind)
	return h
}

// FuzzFrame feeds arbitrary bytes to a connection: it must never panic,
// and must end when the bytes do.
func FuzzFrame(f *testing.F) {
	f.Add(append(header(2, KindRequest), 0x0a, 0x00))
	f.Add(header(0, KindNotify))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		c := NewConn(b, echo)
		go func() {
			_, _ = a.Write(data)
			_ = a.Close()
		}()
		// Drain whatever the connection answers.
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := a.Read(buf); err != nil {
					return
				}
			}
		}()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("connection did not end with its input")
		}
	})
}

func TestCorkHoldsFramesUntilUncork(t *testing.T) {
	c, _ := pair(t, echo)
	c.Cork()
	got := make(chan string, 3)
	for _, w := range []string{"a", "b", "c"} {
		c.Go(mEcho, &pb.Status{Error: w}, func(body []byte, err error) {
			s := &pb.Status{}
			if err == nil && proto.Unmarshal(body, s) != nil {
				s.Error = "undecodable reply"
			}
			got <- s.Error
		})
	}
	c.wmu.Lock()
	held := len(c.wbuf)
	c.wmu.Unlock()
	if held == 0 {
		t.Fatal("corked frames were written")
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	var order []string
	for range 3 {
		order = append(order, <-got)
	}
	if fmt.Sprint(order) != "[a b c]" {
		t.Fatalf("replies %v", order)
	}
}

func TestTokenRequired(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	srv.RequireToken("s3cret")
	defer srv.Close()
	addr := "tcp:" + ln.Addr().String()
	ctx := context.Background()

	if _, err := DialToken(ctx, addr, "wrong", nil); !errors.Is(err, ErrBadToken) {
		t.Fatalf("wrong token: %v", err)
	}
	// No hello at all: the first request is refused and the connection shut.
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, mEcho, &pb.Status{Error: "x"}, nil); err == nil {
		t.Fatal("a request without the token was served")
	}
	<-c.Done()

	good, err := DialToken(ctx, addr, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	resp := &pb.Status{}
	if err := good.Call(ctx, mEcho, &pb.Status{Error: "hi"}, resp); err != nil || resp.Error != "hi" {
		t.Fatalf("with the token: %v %v", resp, err)
	}
}

// Large raw replies are written from the caller's memory (directMin and up)
// while small frames are buffered: concurrent senders of both kinds must
// still produce whole frames, each reply matching its request.
func TestDirectFramesInterleaveWithBufferedOnes(t *testing.T) {
	big := make([]byte, 3*directMin+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	// The reply to a request of n bytes is the first n bytes of big: sizes
	// on both sides of directMin.
	h := HandlerFunc(func(c *Conn, m Method, kind Kind, id uint64, body []byte) {
		if kind == KindRequest {
			req := &pb.ReadChunk{}
			if proto.Unmarshal(body, req) != nil {
				_ = c.ReplyError(id, "bad request")
				return
			}
			n := int(req.Length)
			go func() { _ = c.ReplyRaw(id, big[:n]) }()
		}
	})
	c, _ := pair(t, h)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				n := (g*40 + i) * 1237 % len(big)
				if i%3 == 0 {
					n = 1 + i
				}
				got, err := c.CallRaw(ctx, mEcho, &pb.ReadChunk{Length: int64(n)})
				if err != nil {
					errs <- err
					return
				}
				if len(got) != n || string(got) != string(big[:n]) {
					errs <- fmt.Errorf("request for %d bytes got %d", n, len(got))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestPeerPIDOfAUnixConnection(t *testing.T) {
	c, s := pair(t, echo)
	if got := s.PeerPID(); got != os.Getpid() {
		t.Errorf("server side: peer pid %d, want %d", got, os.Getpid())
	}
	if got := c.PeerPID(); got != os.Getpid() {
		t.Errorf("client side: peer pid %d, want %d", got, os.Getpid())
	}
}

// Replies held by HoldReplies wait in the write buffer until
// ReleaseReplies, or until a frame of another kind takes them along.
func TestHoldRepliesUntilReleased(t *testing.T) {
	c, s := pair(t, echo)
	got := make(chan string, 6)
	send := func(words ...string) {
		for _, w := range words {
			c.Go(mEcho, &pb.Status{Error: w}, func(body []byte, err error) {
				st := &pb.Status{}
				if err == nil && proto.Unmarshal(body, st) != nil {
					st.Error = "undecodable reply"
				}
				got <- st.Error
			})
		}
	}
	heldFrames := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.wmu.Lock()
			frames := countFrames(s.wbuf)
			s.wmu.Unlock()
			if frames == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d replies held, want %d", frames, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	recv := func(want string) {
		t.Helper()
		var order []string
		for range 3 {
			order = append(order, <-got)
		}
		if fmt.Sprint(order) != want {
			t.Fatalf("replies %v, want %s", order, want)
		}
	}

	s.HoldReplies()
	send("a", "b", "c")
	heldFrames(3) // none written: all three are still in the buffer
	if err := s.ReleaseReplies(); err != nil {
		t.Fatal(err)
	}
	recv("[a b c]")

	s.HoldReplies()
	send("d", "e", "f")
	heldFrames(3)
	// A notification is not held, and takes the replies before it along.
	if err := s.Notify(mEcho, &pb.Status{Error: "note"}); err != nil {
		t.Fatal(err)
	}
	recv("[d e f]")
	if err := s.ReleaseReplies(); err != nil {
		t.Fatal(err)
	}
}

// countFrames counts the whole frames in b.
func countFrames(b []byte) int {
	n := 0
	for len(b) >= 4 {
		size := int(binary.BigEndian.Uint32(b[:4])) + 4
		if size > len(b) {
			break
		}
		b, n = b[size:], n+1
	}
	return n
}

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
