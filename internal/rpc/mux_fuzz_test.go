package rpc

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"google.golang.org/protobuf/proto"
)

// frame is a whole frame: header and body.
func frame(m Method, kind Kind, id uint64, body []byte) []byte {
	return append(frameHeader(uint32(len(body)), m, kind, id), body...)
}

// FuzzDispatch sends arbitrary bytes to a server that requires the
// cluster's token and dispatches with a Mux, before the peer presented the
// token and after. The server must never panic, must end the connection
// once the bytes end, must run no handler for a peer without the token,
// and must go on serving others.
func FuzzDispatch(f *testing.F) {
	create, _ := proto.Marshal(&pb.CreateObject{Size: 3})
	f.Add(false, frame(MCreateObject, KindRequest, 1, create))
	f.Add(true, frame(MCreateObject, KindRequest, 1, create))
	f.Add(true, frame(MCreateObject, KindRequest, 1, []byte{0xff, 0xff}))
	f.Add(true, frame(MSealObjects, KindNotify, 0, []byte{0x0a, 0x01, 0x07}))
	f.Add(true, frame(Method(200), KindRequest, 9, nil))
	f.Add(true, frame(MReadChunk, KindRequest, 2, []byte{0x18, 0x05}))
	f.Add(true, frame(MGetJob, KindRequest, 3, []byte{0x0a, 0x01, 'j'}))
	f.Add(false, frame(MHello, KindRequest, 1, []byte{0x0a, 0x03, 'b', 'a', 'd'}))
	f.Add(true, frameHeader(64<<20, MCreateObject, KindRequest, 1))
	var served atomic.Int64
	addr := muxServer(f, "s3cret", &served)
	hello, _ := proto.Marshal(&pb.Status{Error: "s3cret"})
	f.Fuzz(func(t *testing.T, authenticated bool, data []byte) {
		nc, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		before := served.Load()
		if authenticated {
			if _, err := nc.Write(frame(MHello, KindRequest, 1, hello)); err != nil {
				t.Fatal(err)
			}
			var h [headerLen]byte
			if _, err := io.ReadFull(nc, h[:]); err != nil || Kind(h[5]) != KindReply {
				t.Fatalf("Hello: kind %d, %v", h[5], err)
			}
		}
		// The server may close before it has read everything.
		_, _ = nc.Write(data)
		_ = nc.(*net.UnixConn).CloseWrite()
		_, err = io.Copy(io.Discard, nc)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept the connection open after the bytes ended")
		}
		if !authenticated && served.Load() != before {
			t.Fatal("a handler ran for a peer that did not present the token")
		}
		// Others are still served.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := DialToken(ctx, addr, "s3cret", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rep := &pb.CreateObjectReply{}
		if err := c.Call(ctx, MCreateObject, &pb.CreateObject{Size: 4}, rep); err != nil || rep.Offset != 8 {
			t.Fatalf("after the fuzzed connection: %v, %v", rep, err)
		}
	})
}
