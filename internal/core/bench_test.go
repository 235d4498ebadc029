package core

import (
	"context"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The benchmarks below measure core's own cost per task and per actor call
// against the fake raylet and an in-process fake worker; BenchmarkFloor is
// the floor to compare them with in the same run: one round trip of the
// same rpc layer to an in-process server. Besides wall time, each reports
// cpu-ns/op, the CPU time the process spent (user and system, both sides
// of the socket), which a machine shared with other work disturbs less.

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU starts counting CPU time; the function it returns reports it
// per op.
func reportCPU(b *testing.B) func() {
	b.ResetTimer()
	start := cpuTime()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkFloorRPCRoundTrip(b *testing.B) {
	addr := filepath.Join(shortDir(b), "f.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		b.Fatal(err)
	}
	srv := rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler {
		return rpc.HandlerFunc(func(c *rpc.Conn, _ rpc.Method, _ rpc.Kind, id uint64, _ []byte) {
			_ = c.Reply(id, &pb.TaskReply{})
		})
	}, nil)
	defer srv.Close()
	c, err := rpc.Dial(context.Background(), addr, rpc.HandlerFunc(func(*rpc.Conn, rpc.Method, rpc.Kind, uint64, []byte) {}))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	spec := &pb.TaskSpec{Name: "f", Function: "f", NumReturns: 1}
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		if err := c.Call(context.Background(), rpc.MPushTask, spec, &pb.TaskReply{}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchRuntime(b *testing.B) *Runtime {
	w := newFakeWorker(b, nil)
	rl := newFakeRaylet(w)
	cfg := Config{Addr: filepath.Join(shortDir(b), "d.sock"), Raylet: rl}
	rt, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close() })
	return rt
}

func BenchmarkTaskSync(b *testing.B) {
	rt := benchRuntime(b)
	ctx := context.Background()
	opts := TaskOptions{Function: "f", Name: "f", NumReturns: 1}
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		hs, err := rt.Submit(ctx, opts, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rt.Get(ctx, hs[0]); err != nil {
			b.Fatal(err)
		}
		hs[0].Release()
	}
}

func BenchmarkTaskAsync(b *testing.B) {
	rt := benchRuntime(b)
	ctx := context.Background()
	opts := TaskOptions{Function: "f", Name: "f", NumReturns: 1}
	defer reportCPU(b)()
	for done := 0; done < b.N; {
		n := min(1000, b.N-done)
		hs := make([]*Handle, n)
		for i := range hs {
			r, err := rt.Submit(ctx, opts, []Arg{{Value: value("x")}})
			if err != nil {
				b.Fatal(err)
			}
			hs[i] = r[0]
		}
		if _, err := rt.GetMany(ctx, hs); err != nil {
			b.Fatal(err)
		}
		for _, h := range hs {
			h.Release()
		}
		done += n
	}
}

func benchActor(b *testing.B, batch int) {
	rt := benchRuntime(b)
	ctx := context.Background()
	a, err := rt.CreateActor(ctx, ActorOptions{Class: "c", Name: "C"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	opts := TaskOptions{Function: "m", Name: "m", NumReturns: 1}
	defer reportCPU(b)()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		hs := make([]*Handle, n)
		for i := range hs {
			r, err := rt.SubmitActorTask(ctx, a, opts, nil)
			if err != nil {
				b.Fatal(err)
			}
			hs[i] = r[0]
		}
		if _, err := rt.GetMany(ctx, hs); err != nil {
			b.Fatal(err)
		}
		for _, h := range hs {
			h.Release()
		}
		done += n
	}
}

func BenchmarkActorSync(b *testing.B)  { benchActor(b, 1) }
func BenchmarkActorAsync(b *testing.B) { benchActor(b, 1000) }
