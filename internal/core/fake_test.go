package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The unit tests of core run a Runtime against fakeRaylet, an in-memory
// RayletClient, and fakeWorker, an in-process rpc server that plays a
// worker process on a Unix socket. Nothing else runs: no raylet, no
// worker processes.

// fakeRaylet is a RayletClient kept in memory. By default it grants every
// lease at once on its worker; grant, when set, decides instead.
type fakeRaylet struct {
	mu        sync.Mutex
	worker    *fakeWorker
	grant     func(req *pb.RequestLease, cb func(*pb.LeaseReply, error)) // nil: grant on worker
	requests  []*pb.RequestLease
	returned  []*pb.ReturnLease
	freed     []ids.ObjectID
	sealed    []ids.ObjectID
	blocked   []bool
	names     map[string]*pb.ActorName
	alive     []string
	nextLease uint64
	// The store: a bump allocator over arena, when there is one.
	arena  *objstore.Arena
	next   int64
	stored map[ids.ObjectID]int64
	lost   map[ids.ObjectID]int // PinObject fails this many more times
	pinned map[ids.ObjectID]int
}

func newFakeRaylet(w *fakeWorker) *fakeRaylet {
	return &fakeRaylet{worker: w, names: map[string]*pb.ActorName{}, stored: map[ids.ObjectID]int64{},
		lost: map[ids.ObjectID]int{}, pinned: map[ids.ObjectID]int{}}
}

func (f *fakeRaylet) RequestLease(req *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
	f.mu.Lock()
	f.requests = append(f.requests, proto.Clone(req).(*pb.RequestLease))
	grant, w := f.grant, f.worker
	f.nextLease++
	id := f.nextLease
	f.mu.Unlock()
	if grant != nil {
		grant(req, cb)
		return
	}
	cb(&pb.LeaseReply{LeaseId: id, WorkerAddr: w.addr}, nil)
}

func (f *fakeRaylet) ReturnLease(req *pb.ReturnLease) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.returned = append(f.returned, proto.Clone(req).(*pb.ReturnLease))
}

func (f *fakeRaylet) SetBlocked(_ ids.WorkerID, blocked bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = append(f.blocked, blocked)
}

func (f *fakeRaylet) CreateObject(_ context.Context, id ids.ObjectID, size int64, _ string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.arena == nil || f.next+size > f.arena.Capacity() {
		return 0, fmt.Errorf("fake raylet: %w", objstore.ErrFull)
	}
	off := f.next
	f.next += size
	f.stored[id] = off
	return off, nil
}

func (f *fakeRaylet) SealObjects(list []ids.ObjectID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sealed = append(f.sealed, list...)
}

func (f *fakeRaylet) FreeObjects(list []ids.ObjectID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freed = append(f.freed, list...)
	for _, id := range list {
		delete(f.stored, id)
	}
}

func (f *fakeRaylet) PinObject(_ context.Context, id ids.ObjectID) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost[id] > 0 {
		f.lost[id]--
		return 0, fmt.Errorf("fake raylet: %w", ErrObjectLost)
	}
	off, ok := f.stored[id]
	if !ok {
		return 0, fmt.Errorf("fake raylet: %s: %w", id, ErrObjectLost)
	}
	f.pinned[id]++
	return off, nil
}

func (f *fakeRaylet) UnpinObjects(list []ids.ObjectID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range list {
		f.pinned[id]--
	}
}

func (f *fakeRaylet) RegisterActorName(_ context.Context, a *pb.ActorName) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := a.Namespace + "/" + a.Name
	if f.names[k] != nil {
		return fmt.Errorf("fake raylet: actor name %q is taken", a.Name)
	}
	f.names[k] = a
	return nil
}

func (f *fakeRaylet) LookupActorName(_ context.Context, namespace, name string) (*pb.ActorName, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.names[namespace+"/"+name]
	if a == nil {
		return nil, fmt.Errorf("fake raylet: no actor %q", name)
	}
	return a, nil
}

func (f *fakeRaylet) ActorAlive(_ []byte, workerAddr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alive = append(f.alive, workerAddr)
}

func (f *fakeRaylet) PullObject(ctx context.Context, id ids.ObjectID, _ string, _ int64) (int64, error) {
	return f.PinObject(ctx, id)
}

func (f *fakeRaylet) PlacementGroup(context.Context, *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	return nil, errors.New("fake raylet: no placement groups")
}

// snapshot returns copies of what the raylet was asked.
func (f *fakeRaylet) snapshot() (requests []*pb.RequestLease, returned []*pb.ReturnLease, freed []ids.ObjectID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*pb.RequestLease(nil), f.requests...), append([]*pb.ReturnLease(nil), f.returned...),
		append([]ids.ObjectID(nil), f.freed...)
}

func (f *fakeRaylet) wasFreed(id ids.ObjectID) bool {
	_, _, freed := f.snapshot()
	for _, x := range freed {
		if x == id {
			return true
		}
	}
	return false
}

// fakeWorker plays a worker process: it serves MPushTask on a Unix socket
// with run, in a goroutine per task, after recording the spec in arrival
// order. A nil reply from run closes the connection, as the death of the
// process would.
type fakeWorker struct {
	addr string
	srv  *rpc.Server
	run  func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply
	raw  []byte // when set, every push is answered with these bytes instead

	mu        sync.Mutex
	specs     []*pb.TaskSpec
	cancelled [][]byte
	killed    [][]byte
	wg        sync.WaitGroup
}

// okReply answers a task with each return value "<name>:<i>", inline.
func okReply(_ *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply {
	r := &pb.TaskReply{TaskId: spec.TaskId, ExecNs: 1000}
	for i := 0; i < int(spec.NumReturns); i++ {
		r.Returns = append(r.Returns, &pb.Locator{Inline: fmt.Appendf(nil, "%s:%d", spec.Name, i)})
	}
	return r
}

func newFakeWorker(t testing.TB, run func(c *rpc.Conn, spec *pb.TaskSpec) *pb.TaskReply) *fakeWorker {
	t.Helper()
	if run == nil {
		run = okReply
	}
	w := &fakeWorker{addr: filepath.Join(shortDir(t), "w.sock"), run: run}
	ln, err := net.Listen("unix", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return rpc.HandlerFunc(w.handle) }, nil)
	t.Cleanup(func() {
		_ = w.srv.Close()
		w.wg.Wait()
	})
	return w
}

func (w *fakeWorker) handle(c *rpc.Conn, m rpc.Method, _ rpc.Kind, id uint64, body []byte) {
	switch m {
	case rpc.MPushTask:
		spec := &pb.TaskSpec{}
		if err := proto.Unmarshal(body, spec); err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		w.mu.Lock()
		w.specs = append(w.specs, spec)
		run, raw := w.run, w.raw
		w.mu.Unlock()
		if raw != nil {
			_ = c.ReplyRaw(id, raw)
			return
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			if r := run(c, spec); r != nil {
				_ = c.Reply(id, r)
			} else {
				_ = c.Close()
			}
		}()
	case rpc.MCancelTask, rpc.MKillActor:
		msg := &pb.ObjectIDs{}
		if m == rpc.MKillActor {
			req := &pb.ActorAddrRequest{}
			_ = proto.Unmarshal(body, req)
			msg.Ids = [][]byte{req.ActorId}
		} else {
			_ = proto.Unmarshal(body, msg)
		}
		w.mu.Lock()
		if m == rpc.MCancelTask {
			w.cancelled = append(w.cancelled, msg.Ids...)
		} else {
			w.killed = append(w.killed, msg.Ids...)
		}
		w.mu.Unlock()
		if m == rpc.MKillActor {
			// The actor's process exits (not on the read loop, which Close waits for).
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				_ = c.Close()
			}()
		}
	}
}

// pushed returns the specs received so far, in arrival order.
func (w *fakeWorker) pushed() []*pb.TaskSpec {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*pb.TaskSpec(nil), w.specs...)
}

// shortDir is a fresh directory with a path short enough for Unix
// sockets (t.TempDir's can pass the 108-byte limit).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "core")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// newTestRuntime starts a runtime (a driver, unless cfg says otherwise)
// against rc, closed when the test ends.
func newTestRuntime(t *testing.T, rc RayletClient, cfg Config) *Runtime {
	t.Helper()
	cfg.Addr = filepath.Join(shortDir(t), "d.sock")
	cfg.Raylet = rc
	rt, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if g := rt.Goroutines(); len(g) != 0 {
			t.Errorf("goroutines outlive Close: %v", g)
		}
	})
	return rt
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// testCtx is a context that ends with the test, or after 20 s.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// value is an encoded inline argument.
func value(s string) codec.Payload { return codec.Payload{Body: []byte(s)} }

// getValue waits for h and returns its inline bytes, or its error.
func getValue(ctx context.Context, rt *Runtime, h *Handle) (string, error) {
	loc, err := rt.Get(ctx, h)
	if err != nil {
		return "", err
	}
	if loc.Error != nil {
		return "", TaskErrorFrom(loc.Error)
	}
	return string(loc.Inline), nil
}

// submit1 submits a one-return task named name.
func submit1(t *testing.T, rt *Runtime, name string, opts TaskOptions, args ...Arg) *Handle {
	t.Helper()
	opts.Function, opts.Name, opts.NumReturns = "f", name, 1
	hs, err := rt.Submit(context.Background(), opts, args)
	if err != nil {
		t.Fatalf("submit %s: %v", name, err)
	}
	return hs[0]
}
