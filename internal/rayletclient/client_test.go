package rayletclient

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// fakeRaylet answers CreateObject, PinObject and PullObject with the
// reply its table names for the requested size.
func fakeRaylet(t *testing.T, replies map[int64]*pb.CreateObjectReply) *Client {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "raylet.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	mx := rpc.NewMux("fake raylet")
	answer := func(size int64) (*pb.CreateObjectReply, error) {
		if r := replies[size]; r != nil {
			return r, nil
		}
		return nil, errors.New("fake raylet: no reply for this size")
	}
	rpc.Handle(mx, rpc.CreateObject, func(_ context.Context, req *pb.CreateObject) (*pb.CreateObjectReply, error) {
		return answer(req.Size)
	})
	rpc.Handle(mx, rpc.PullObject, func(_ context.Context, req *pb.PullObject) (*pb.CreateObjectReply, error) {
		return answer(req.Size)
	})
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return mx }, nil)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := rpc.Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Client{Conn: c}
}

// TestRepliesBecomeSentinels: what a raylet says in a reply's fields comes
// back as the error callers match with errors.Is.
func TestRepliesBecomeSentinels(t *testing.T) {
	cl := fakeRaylet(t, map[int64]*pb.CreateObjectReply{
		1: {Offset: 4096},
		2: {Error: "objstore: object store full: 10 bytes free", Full: true},
		3: {Error: "objstore: object larger than store capacity: 3 > 2", Full: true},
		4: {Error: "raylet: object x not here", Lost: true},
		5: {Error: "raylet: something else"},
	})
	ctx := context.Background()
	id := ids.ForPut()
	if off, err := cl.CreateObject(ctx, id, 1, ""); err != nil || off != 4096 {
		t.Fatalf("create: %d, %v", off, err)
	}
	for _, tc := range []struct {
		size int64
		want error
		not  error
	}{
		{2, objstore.ErrFull, objstore.ErrTooLarge},
		{3, objstore.ErrTooLarge, objstore.ErrObjectLost},
	} {
		_, err := cl.CreateObject(ctx, id, tc.size, "")
		if !errors.Is(err, tc.want) || errors.Is(err, tc.not) {
			t.Errorf("create of size %d: %v; want it to match %v and not %v", tc.size, err, tc.want, tc.not)
		}
	}
	if _, err := cl.PullObject(ctx, id, "10.0.0.1:1", 4); !errors.Is(err, objstore.ErrObjectLost) {
		t.Errorf("pull of a lost object: %v, want ErrObjectLost", err)
	}
	_, err := cl.PullObject(ctx, id, "10.0.0.1:1", 5)
	if err == nil || errors.Is(err, objstore.ErrObjectLost) || errors.Is(err, objstore.ErrFull) || err.Error() != "raylet: something else" {
		t.Errorf("pull's plain error: %v", err)
	}
	var re *rpc.RemoteError
	if _, err := cl.CreateObject(ctx, id, 6, ""); !errors.As(err, &re) {
		t.Errorf("a raylet's error reply: %v, want an rpc.RemoteError", err)
	}
}

// TestDialWantsTheToken: Dial presents the token, and a wrong one is told
// apart.
func TestDialWantsTheToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mx := rpc.NewMux("fake raylet")
	rpc.Handle(mx, rpc.ListNodes, func(context.Context, *pb.Empty) (*pb.NodeList, error) { return &pb.NodeList{}, nil })
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return mx }, nil)
	srv.RequireToken("s3cret")
	defer srv.Close()
	ctx := context.Background()
	if _, err := Dial(ctx, ln.Addr().String(), "wrong", nil); !errors.Is(err, rpc.ErrBadToken) {
		t.Fatalf("a wrong token: %v, want ErrBadToken", err)
	}
	c, err := Dial(ctx, ln.Addr().String(), "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Conn.Call(ctx, rpc.MListNodes, &pb.Empty{}, &pb.NodeList{}); err != nil {
		t.Fatalf("a call after Dial: %v", err)
	}
}
