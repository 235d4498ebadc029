package rpc

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"google.golang.org/protobuf/proto"
)

// handWritten serves CreateObject the way handlers were written before
// Mux: a switch, a decode and a reply-with-error of their own. It is the
// floor BenchmarkDispatch compares Mux with.
func handWritten(c *Conn, m Method, kind Kind, id uint64, body []byte) {
	switch m {
	case MCreateObject:
		req := &pb.CreateObject{}
		if err := proto.Unmarshal(body, req); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		_ = c.Reply(id, &pb.CreateObjectReply{Offset: req.Size})
	default:
		if kind == KindRequest {
			_ = c.ReplyError(id, "unknown method")
		}
	}
}

// BenchmarkDispatch measures calls answered by a Mux and by a
// hand-written handler, over a Unix socket, in one run: report the ratio
// of the two.
func BenchmarkDispatch(b *testing.B) {
	mx := NewMux("bench")
	Handle(mx, CreateObject, func(_ context.Context, req *pb.CreateObject) (*pb.CreateObjectReply, error) {
		return &pb.CreateObjectReply{Offset: req.Size}, nil
	})
	for _, tc := range []struct {
		name string
		h    Handler
	}{{"handwritten", HandlerFunc(handWritten)}, {"mux", mx}} {
		b.Run(tc.name, func(b *testing.B) {
			addr := filepath.Join(b.TempDir(), "d.sock")
			ln, err := net.Listen("unix", addr)
			if err != nil {
				b.Fatal(err)
			}
			srv := NewServer(ln, func(*Conn) Handler { return tc.h }, nil)
			defer srv.Close()
			c, err := Dial(context.Background(), addr, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			req := &pb.CreateObject{ObjectId: make([]byte, 28), Size: 7}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb_ *testing.PB) {
				rep := &pb.CreateObjectReply{}
				for pb_.Next() {
					if err := c.Call(ctx, MCreateObject, req, rep); err != nil || rep.Offset != 7 {
						b.Fatalf("%v %v", rep, err)
					}
				}
			})
		})
	}
}

// sinkConn is a net.Conn that takes every write and reads nothing until
// closed: a Conn over it measures a handler's dispatch and reply alone.
type sinkConn struct {
	net.Conn
	closed chan struct{}
}

func (s sinkConn) Write(b []byte) (int, error) { return len(b), nil }
func (s sinkConn) Read([]byte) (int, error) {
	<-s.closed
	return 0, net.ErrClosed
}
func (s sinkConn) Close() error {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	return nil
}

// BenchmarkDispatchAlone measures one request's dispatch, decode, call
// and reply, without the socket, for a Mux and for a hand-written handler
// (the floor), alternating them in rounds of 1,000 requests on the same
// connection: it reports the best round of each, in ns per request, and
// the ratios to the floor (mux/floor for Handle, async/floor for
// HandleAsync), as the machine's noise spares the best rounds most.
func BenchmarkDispatchAlone(b *testing.B) {
	mx := NewMux("bench")
	Handle(mx, CreateObject, func(_ context.Context, req *pb.CreateObject) (*pb.CreateObjectReply, error) {
		return &pb.CreateObjectReply{Offset: req.Size}, nil
	})
	body, err := proto.Marshal(&pb.CreateObject{ObjectId: make([]byte, 28), Size: 7})
	if err != nil {
		b.Fatal(err)
	}
	async := NewMux("bench")
	HandleAsync(async, CreateObject, func(_ context.Context, req *pb.CreateObject, reply func(*pb.CreateObjectReply, error)) {
		reply(&pb.CreateObjectReply{Offset: req.Size}, nil)
	})
	c := NewConn(sinkConn{closed: make(chan struct{})}, nil)
	defer c.Close()
	const round = 1000
	handlers := [3]Handler{HandlerFunc(handWritten), mx, async}
	best := [3]time.Duration{time.Hour, time.Hour, time.Hour}
	b.ReportAllocs()
	id := uint64(0)
	for n := 0; n < b.N; n += len(handlers) * round {
		for k, h := range handlers {
			start := time.Now()
			for range round {
				id++
				h.Handle(c, MCreateObject, KindRequest, id, body)
			}
			best[k] = min(best[k], time.Since(start))
		}
	}
	b.ReportMetric(float64(best[0].Nanoseconds())/round, "floor-ns/req")
	b.ReportMetric(float64(best[1].Nanoseconds())/round, "mux-ns/req")
	b.ReportMetric(float64(best[2].Nanoseconds())/round, "async-ns/req")
	b.ReportMetric(float64(best[1])/float64(best[0]), "mux/floor")
	b.ReportMetric(float64(best[2])/float64(best[0]), "async/floor")
}
