package worker

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// request is a request the test server received: what to answer.
type request struct {
	conn *rpc.Conn
	id   uint64
}

// replyPair connects a client to a server whose requests the test answers
// itself, and returns the client and the server's requests.
func replyPair(t *testing.T) (*rpc.Conn, <-chan request) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	reqs := make(chan request, 16)
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler {
		return rpc.HandlerFunc(func(c *rpc.Conn, _ rpc.Method, kind rpc.Kind, id uint64, _ []byte) {
			if kind == rpc.KindRequest {
				reqs <- request{c, id}
			}
		})
	}, nil)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := rpc.Dial(context.Background(), sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, reqs
}

// Replies are held while more tasks of their connection wait, and all go
// when the last is answered.
func TestRepliesHeldWhileMoreWait(t *testing.T) {
	c, reqs := replyPair(t)
	got := make(chan string, 4)
	for _, w := range []string{"a", "b", "c", "d"} {
		c.Go(rpc.PushTask.Method, &pb.Empty{}, func(_ []byte, err error) {
			if err != nil {
				w = err.Error()
			}
			got <- w
		})
	}
	// No time limit here: a reply written slower than maxHold (1 ms, on
	// a loaded machine) released the held ones, and the test failed.
	h := &replyHolder{wake: make(chan struct{}, 1), hold: time.Hour}
	for i := range 4 {
		r := <-reqs
		more := i < 3
		h.send(r.conn, more, func() { _ = r.conn.Reply(r.id, &pb.Empty{}) })
		h.mu.Lock()
		holding, n := h.conn != nil, h.n
		h.mu.Unlock()
		if holding != more || more && n != i+1 {
			t.Fatalf("after reply %d (more %v): holding %v with %d", i, more, holding, n)
		}
	}
	for _, want := range []string{"a", "b", "c", "d"} {
		if w := <-got; w != want {
			t.Fatalf("reply %q, want %q", w, want)
		}
	}
}

// A reply held for a next task that runs long is written by the watchdog
// within about maxHold.
func TestHeldReplyWrittenWhileTheNextTaskRuns(t *testing.T) {
	c, reqs := replyPair(t)
	got := make(chan error, 1)
	c.Go(rpc.PushTask.Method, &pb.Empty{}, func(_ []byte, err error) { got <- err })
	h := &replyHolder{wake: make(chan struct{}, 1)}
	go h.watch()
	defer close(h.wake)
	r := <-reqs
	start := time.Now()
	h.send(r.conn, true, func() { _ = r.conn.Reply(r.id, &pb.Empty{}) }) // and the next task runs on
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held reply was not written in 10 s")
	}
	if d := time.Since(start); d < maxHold {
		t.Fatalf("the reply came after %v, before it was released", d)
	}
}
