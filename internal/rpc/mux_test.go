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
	"google.golang.org/protobuf/proto"
)

// testMux serves a few methods of the table with every form of handler.
// served counts the handler calls.
func testMux(served *atomic.Int64) *Mux {
	mx := NewMux("test")
	Handle(mx, CreateObject, func(ctx context.Context, req *pb.CreateObject) (*pb.CreateObjectReply, error) {
		served.Add(1)
		if ConnOf(ctx) == nil {
			return nil, errors.New("no connection in the context")
		}
		if req.Size < 0 {
			return nil, errors.New("test: negative size")
		}
		return &pb.CreateObjectReply{Offset: req.Size * 2}, nil
	})
	HandleAsync(mx, GetJob, func(_ context.Context, req *pb.JobRequest, reply func(*pb.JobInfo, error)) {
		served.Add(1)
		go reply(&pb.JobInfo{JobId: req.JobId + "!"}, nil)
	})
	HandleRaw(mx, ReadChunk, func(_ context.Context, req *pb.ReadChunk, reply func([]byte, error)) {
		served.Add(1)
		if req.Length > 16 {
			reply(nil, errors.New("test: too long"))
			return
		}
		reply(make([]byte, req.Length), nil)
	})
	HandleNotify(mx, SealObjects, func(_ context.Context, msg *pb.ObjectIDs) {
		served.Add(int64(len(msg.Ids)))
	})
	return mx
}

// muxServer serves testMux on a Unix socket; token, when set, is required.
func muxServer(t testing.TB, token string, served *atomic.Int64) string {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "mux.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	mx := testMux(served)
	srv := NewServer(ln, func(*Conn) Handler { return mx }, nil)
	if token != "" {
		srv.RequireToken(token)
		srv.SetHandshakeTimeout(2 * time.Second)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return addr
}

// rawCall sends one request frame with body as it is and returns the
// kind and body of the answer.
func rawCall(t *testing.T, c *Conn, m Method, body []byte) (Kind, []byte) {
	t.Helper()
	type answer struct {
		body []byte
		err  error
	}
	ch := make(chan answer, 1)
	id := c.nextID.Add(1)
	c.pmu.Lock()
	c.pending[id] = func(b []byte, err error) { ch <- answer{b, err} }
	c.pmu.Unlock()
	if err := c.send(m, KindRequest, id, nil, body); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-ch:
		var re *RemoteError
		if errors.As(a.err, &re) {
			return KindError, []byte(re.Msg)
		}
		if a.err != nil {
			t.Fatal(a.err)
		}
		return KindReply, a.body
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer to %s", m)
		return 0, nil
	}
}

func TestMuxServesEachForm(t *testing.T) {
	var served atomic.Int64
	c, err := Dial(context.Background(), muxServer(t, "", &served), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	rep := &pb.CreateObjectReply{}
	if err := c.Call(ctx, MCreateObject, &pb.CreateObject{Size: 21}, rep); err != nil || rep.Offset != 42 {
		t.Fatalf("CreateObject: %v, %v", rep, err)
	}
	err = c.Call(ctx, MCreateObject, &pb.CreateObject{Size: -1}, rep)
	if re := (*RemoteError)(nil); !errors.As(err, &re) || re.Msg != "test: negative size" {
		t.Fatalf("a handler's error: %v, want the error reply %q", err, "test: negative size")
	}
	job := &pb.JobInfo{}
	if err := c.Call(ctx, MGetJob, &pb.JobRequest{JobId: "j"}, job); err != nil || job.JobId != "j!" {
		t.Fatalf("GetJob (async): %v, %v", job, err)
	}
	b, err := c.CallRaw(ctx, MReadChunk, &pb.ReadChunk{Length: 5})
	if err != nil || len(b) != 5 {
		t.Fatalf("ReadChunk (raw): %d bytes, %v", len(b), err)
	}
	if _, err := c.CallRaw(ctx, MReadChunk, &pb.ReadChunk{Length: 17}); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("ReadChunk's error: %v", err)
	}
	// A notification, then a request for the same method: both are
	// served, the request gets an empty reply.
	if err := c.Notify(MSealObjects, &pb.ObjectIDs{Ids: [][]byte{{1}, {2}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, MSealObjects, &pb.ObjectIDs{Ids: [][]byte{{3}}}, &pb.Empty{}); err != nil {
		t.Fatalf("a notification method called as a request: %v", err)
	}
	// 2 CreateObject + GetJob + 2 ReadChunk + 3 ids sealed.
	if n := served.Load(); n != 8 {
		t.Fatalf("handlers ran %d times, want 8", n)
	}
}

func TestMuxRefusesBadRequests(t *testing.T) {
	var served atomic.Int64
	c, err := Dial(context.Background(), muxServer(t, "", &served), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big, _ := proto.Marshal(&pb.CreateObject{ObjectId: make([]byte, smallBody)})
	for _, tc := range []struct {
		name string
		m    Method
		body []byte
		want string
	}{
		{"unknown method", MRegisterNode, nil, "test: unknown method RegisterNode"},
		{"unnamed method", Method(200), nil, "test: unknown method method 200"},
		{"malformed body", MCreateObject, []byte{0xff, 0xff, 0xff}, "test: CreateObject: rpc: malformed frame: "},
		{"invalid UTF-8 in a string", MGetJob, []byte{0x0a, 0x01, 0xff}, "test: GetJob: rpc: malformed frame: "},
		{"over the method's bound", MCreateObject, big, "test: CreateObject: rpc: malformed frame: body of 65540 bytes, over the 65536 this method takes"},
		{"malformed notification sent as a request", MSealObjects, []byte{0x0a, 0x05}, "test: SealObjects: rpc: malformed frame: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, body := rawCall(t, c, tc.m, tc.body)
			if kind != KindError || !strings.HasPrefix(string(body), tc.want) {
				t.Fatalf("got %d %q, want an error reply starting %q", kind, body, tc.want)
			}
		})
	}
	if n := served.Load(); n != 0 {
		t.Fatalf("handlers ran %d times for bad requests", n)
	}
	// The connection still serves.
	rep := &pb.CreateObjectReply{}
	if err := c.Call(context.Background(), MCreateObject, &pb.CreateObject{Size: 1}, rep); err != nil || rep.Offset != 2 {
		t.Fatalf("after bad requests: %v, %v", rep, err)
	}
}

func TestMuxContextEndsWithItsConnection(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "ctx.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan context.Context, 1)
	mx := NewMux("test")
	HandleNotify(mx, SealObjects, func(ctx context.Context, _ *pb.ObjectIDs) { got <- ctx })
	srv := NewServer(ln, func(*Conn) Handler { return mx }, nil)
	defer srv.Close()
	c, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Notify(MSealObjects, &pb.ObjectIDs{}); err != nil {
		t.Fatal(err)
	}
	ctx := <-got
	if ctx.Err() != nil || ConnOf(ctx) == nil {
		t.Fatalf("a live request's context: err %v, conn %v", ctx.Err(), ConnOf(ctx))
	}
	if ConnOf(context.Background()) != nil {
		t.Fatal("ConnOf found a connection in a plain context")
	}
	_ = c.Close()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the context outlived its connection")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("Err after the connection closed: %v", ctx.Err())
	}
}

func TestMethodNames(t *testing.T) {
	for m, want := range map[Method]string{MRegisterWorker: "RegisterWorker", MWorkerOOM: "WorkerOOM", MHello: "Hello", Method(99): "method 99"} {
		if got := m.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(m), got, want)
		}
	}
	for m := MRegisterWorker; m <= MFlushOutput; m++ {
		if methods[m].name == "" {
			t.Errorf("method %d has no entry in the table", uint8(m))
		}
	}
}
