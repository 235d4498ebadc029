package rpc

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The typed client calls reach the typed handlers, with their replies and
// errors.
func TestTypedCalls(t *testing.T) {
	var served atomic.Int64
	addr := muxServer(t, "", &served)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rep, err := Call(ctx, c, CreateObject, &pb.CreateObject{Size: 21})
	if err != nil || rep.Offset != 42 {
		t.Fatalf("Call CreateObject: %v %v, want offset 42", rep, err)
	}
	if _, err := Call(ctx, c, CreateObject, &pb.CreateObject{Size: -1}); err == nil || !strings.Contains(err.Error(), "negative size") {
		t.Fatalf("Call CreateObject with a negative size: %v, want the handler's error", err)
	}
	got := make(chan string, 1)
	Go(c, GetJob, &pb.JobRequest{JobId: "j"}, func(r *pb.JobInfo, err error) {
		if err != nil {
			got <- err.Error()
			return
		}
		got <- r.JobId
	})
	if s := <-got; s != "j!" {
		t.Fatalf("Go GetJob: %q, want j!", s)
	}
	before := served.Load()
	if err := Notify(c, SealObjects, &pb.ObjectIDs{Ids: [][]byte{{1}, {2}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for served.Load() != before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the notification was not served (%d)", served.Load()-before)
		}
		time.Sleep(time.Millisecond)
	}
}

// A reply that does not decode as the method's reply type is an error
// that wraps ErrCorrupt, for Call and Go alike.
func TestTypedCallsRefuseMalformedReplies(t *testing.T) {
	mx := NewMux("test")
	HandleRaw(mx, RawRequest[pb.JobRequest]{Method: MGetJob}, func(_ context.Context, _ *pb.JobRequest, reply func([]byte, error)) {
		reply([]byte{0xff}, nil) // not a JobInfo
	})
	addr := filepath.Join(t.TempDir(), "bad.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return mx }, nil)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := Call(ctx, c, GetJob, &pb.JobRequest{JobId: "j"}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Call: %v, want ErrCorrupt", err)
	}
	got := make(chan error, 1)
	Go(c, GetJob, &pb.JobRequest{JobId: "j"}, func(r *pb.JobInfo, err error) {
		if r != nil {
			err = errors.New("a reply decoded from nonsense")
		}
		got <- err
	})
	if err := <-got; !errors.Is(err, ErrCorrupt) {
		t.Errorf("Go: %v, want ErrCorrupt", err)
	}
}
