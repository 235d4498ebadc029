package raylet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/raylet/transfer"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// startNode starts a raylet with no workers that serves other nodes over
// loopback TCP.
func startNode(tb testing.TB, capacity int64, token string) *Raylet {
	tb.Helper()
	r, err := Start(Config{
		SessionDir:    tb.TempDir(),
		NumCPUs:       1,
		StoreCapacity: capacity,
		ListenTCP:     "127.0.0.1:0",
		Token:         token,
		LogOutput:     io.Discard,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// putObject writes a new object of size bytes into r's store, each byte
// derived from its position and seed, and seals it.
func putObject(tb testing.TB, r *Raylet, size int64, seed byte) ids.ObjectID {
	tb.Helper()
	id := ids.ForPut()
	off, err := r.store.Create(id, size)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := r.arena.Slice(off, size)
	if err != nil {
		tb.Fatal(err)
	}
	fill(b, seed)
	if err := r.store.Seal(id); err != nil {
		tb.Fatal(err)
	}
	return id
}

// fill writes a pattern that differs at every offset modulo 251 and per
// seed, so a chunk written to the wrong place shows.
func fill(b []byte, seed byte) {
	const period = 251 * 4096
	n := min(len(b), period)
	for i := range b[:n] {
		b[i] = byte(i%251) ^ seed ^ byte(i/251)
	}
	for i := n; i < len(b); i += n {
		copy(b[i:], b[:n])
	}
}

// objectBytes is the sealed object id of r.
func objectBytes(tb testing.TB, r *Raylet, id ids.ObjectID) []byte {
	tb.Helper()
	off, size, ok := r.store.Lookup(id)
	if !ok {
		tb.Fatalf("object %s not in the store", id)
	}
	b, err := r.arena.View(off, size)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func served(r *Raylet) int64 {
	return r.xfer.Stats().Served
}

// pullSize is the size of the bandwidth test's object: 1 GiB with
// RAYO_BIG=1, 256 MiB otherwise.
func pullSize() int64 {
	if os.Getenv("RAYO_BIG") == "1" {
		return 1 << 30
	}
	return 256 << 20
}

// loopbackFloor measures one TCP stream over 127.0.0.1 between two
// goroutines: total bytes written in 4 MiB writes, read into a 4 MiB
// buffer. It returns GB/s (10^9 bytes per second).
func loopbackFloor(tb testing.TB, total int64) float64 {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	const block = 4 << 20
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		buf := make([]byte, block)
		fill(buf, 1)
		for n := int64(0); n < total; n += block {
			if _, err := c.Write(buf[:min(block, total-n)]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, block)
	start := time.Now()
	if _, err := io.ReadFull(c, buf[:1]); err != nil { // the clock starts with the data
		tb.Fatal(err)
	}
	if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, total-1), buf); err != nil {
		tb.Fatal(err)
	}
	elapsed := time.Since(start)
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	return float64(total) / elapsed.Seconds() / 1e9
}

// timedPull pulls id into b and returns GB/s.
func timedPull(tb testing.TB, b, a *Raylet, id ids.ObjectID, size int64) float64 {
	tb.Helper()
	start := time.Now()
	if _, err := b.Pull(context.Background(), id, a.TCPAddr(), size); err != nil {
		tb.Fatal(err)
	}
	return float64(size) / time.Since(start).Seconds() / 1e9
}

func TestPullCopiesAtLoopbackSpeed(t *testing.T) {
	size := pullSize()
	capacity := size + size/4
	a := startNode(t, capacity, "t")
	b := startNode(t, capacity, "t")
	id := putObject(t, a, size, 7)

	// The first pull writes into pages of b's store never touched before;
	// later ones reuse the pages a freed object left, as on a node that
	// has been running a while. Best of a few runs, for the pull and the
	// floor alike and taken in turns: the machine is shared.
	cold := timedPull(t, b, a, id, size)
	if !bytes.Equal(objectBytes(t, b, id), objectBytes(t, a, id)) {
		t.Fatal("pulled bytes differ from the source's")
	}
	if got, want := served(a), (size+transfer.ChunkSize-1)/transfer.ChunkSize; got != want {
		t.Errorf("source served %d chunks, want %d", got, want)
	}
	var warm, floor float64
	for range 3 {
		if _, err := b.store.Delete(id); err != nil {
			t.Fatal(err)
		}
		warm = max(warm, timedPull(t, b, a, id, size))
		floor = max(floor, loopbackFloor(t, 1<<30))
	}
	if !bytes.Equal(objectBytes(t, b, id), objectBytes(t, a, id)) {
		t.Fatal("pulled bytes differ from the source's")
	}
	t.Logf("pull of %d MiB: %.2f GB/s into a running store, %.2f GB/s into fresh pages; loopback TCP floor %.2f GB/s; ratio %.2f (fresh pages %.2f)",
		size>>20, warm, cold, floor, warm/floor, cold/floor)
	if warm < 0.5*floor {
		t.Errorf("pull bandwidth %.2f GB/s is below half the loopback floor %.2f GB/s", warm, floor)
	}
}

// BenchmarkPull pulls an object from one raylet to another, freeing the
// copy after each pull, and reports the loopback TCP floor next to it.
func BenchmarkPull(bm *testing.B) {
	size := pullSize()
	capacity := size + size/4
	a := startNode(bm, capacity, "t")
	b := startNode(bm, capacity, "t")
	id := putObject(bm, a, size, 7)
	// Once first, so that the timed pulls write into pages of b's store
	// that are mapped already, as on a node that has been running.
	timedPull(bm, b, a, id, size)
	if _, err := b.store.Delete(id); err != nil {
		bm.Fatal(err)
	}
	bm.SetBytes(size)
	bm.ResetTimer()
	start := time.Now()
	for i := 0; i < bm.N; i++ {
		if _, err := b.Pull(context.Background(), id, a.TCPAddr(), size); err != nil {
			bm.Fatal(err)
		}
		if _, err := b.store.Delete(id); err != nil {
			bm.Fatal(err)
		}
	}
	pull := float64(size) * float64(bm.N) / time.Since(start).Seconds() / 1e9
	bm.StopTimer()
	floor := loopbackFloor(bm, 1<<30)
	bm.ReportMetric(pull, "pull-GB/s")
	bm.ReportMetric(floor, "floor-GB/s")
	bm.ReportMetric(pull/floor, "pull/floor")
}

func TestPullObjectMissingAtSourceIsLost(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	id := ids.ForPut()
	_, err := b.Pull(context.Background(), id, a.TCPAddr(), 3<<20)
	if !errors.Is(err, ErrObjectLost) {
		t.Fatalf("want ErrObjectLost, got %v", err)
	}
	if n := b.store.Len(); n != 0 {
		t.Errorf("%d objects left in the puller's store, want the partial one deleted", n)
	}
}

// A pull may reach the source before the seal its writer sent (on
// another connection): it waits for the seal rather than call the object
// lost.
func TestPullWaitsForTheSeal(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	const size = 3 << 20
	id := ids.ForPut()
	off, err := a.store.Create(id, size)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := a.arena.Slice(off, size)
	if err != nil {
		t.Fatal(err)
	}
	fill(dst, 9)
	done := make(chan error, 1)
	go func() {
		_, err := b.Pull(context.Background(), id, a.TCPAddr(), size)
		done <- err
	}()
	// The pull asks for chunks of an unsealed object: each is answered
	// only once the seal comes.
	waitUntil(t, "the source to be asked for chunks", func() bool {
		return a.xfer.Readers(id) > 0
	})
	select {
	case err := <-done:
		t.Fatalf("the pull ended before the seal: %v", err)
	default:
	}
	a.SealObjects([]ids.ObjectID{id})
	if err := <-done; err != nil {
		t.Fatalf("pull after the seal: %v", err)
	}
	want := make([]byte, size)
	fill(want, 9)
	if !bytes.Equal(objectBytes(t, b, id), want) {
		t.Fatal("the pulled copy differs")
	}
}

func TestPullFromUnreachableSourceIsLost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	b := startNode(t, 16<<20, "t")
	start := time.Now()
	_, err = b.Pull(context.Background(), ids.ForPut(), addr, 1<<20)
	if !errors.Is(err, ErrObjectLost) {
		t.Fatalf("want ErrObjectLost, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v to give up on a refused connection", d)
	}
	if n := b.store.Len(); n != 0 {
		t.Errorf("%d objects left in the puller's store", n)
	}
}

func TestPullWithWrongTokenSaysSo(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "not-t")
	id := putObject(t, a, 1<<20, 1)
	_, err := b.Pull(context.Background(), id, a.TCPAddr(), 1<<20)
	if !errors.Is(err, rpc.ErrBadToken) {
		t.Fatalf("want rpc.ErrBadToken, got %v", err)
	}
	if errors.Is(err, ErrObjectLost) {
		t.Errorf("a refused token is not a lost object: %v", err)
	}
}

// gate is a TCP proxy to target that holds every connection until opened.
type gate struct {
	ln     net.Listener
	target string
	open   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newGate(t *testing.T, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, open: make(chan struct{})}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(g.close)
	return g
}

func (g *gate) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.track(c)
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			<-g.open
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				return
			}
			g.track(up)
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				_, _ = io.Copy(up, c)
				up.Close()
			}()
			_, _ = io.Copy(c, up)
			c.Close()
		}()
	}
}

func (g *gate) track(c net.Conn) {
	g.mu.Lock()
	g.conns = append(g.conns, c)
	g.mu.Unlock()
}

func (g *gate) close() {
	g.ln.Close()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
	g.mu.Lock()
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// waitUntil spins until cond holds, failing after a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func TestConcurrentPullsShareOneTransfer(t *testing.T) {
	a := startNode(t, 64<<20, "t")
	b := startNode(t, 64<<20, "t")
	const size = 20<<20 + 12345
	id := putObject(t, a, size, 3)
	g := newGate(t, a.TCPAddr())

	const n = 8
	offs := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			offs[i], errs[i] = b.Pull(context.Background(), id, g.ln.Addr().String(), size)
		}()
	}
	// The source cannot answer until the gate opens: every Pull joins the
	// one transfer in flight.
	waitUntil(t, "every pull to join", func() bool {
		w, ok := b.xfer.InFlight()[id]
		return ok && w == n
	})
	close(g.open)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("pull %d: %v", i, errs[i])
		}
		if offs[i] != offs[0] {
			t.Fatalf("pull %d got offset %d, pull 0 got %d", i, offs[i], offs[0])
		}
	}
	if want := int64((size + transfer.ChunkSize - 1) / transfer.ChunkSize); served(a) != want {
		t.Errorf("source served %d chunks, want %d (one transfer)", served(a), want)
	}
	if !bytes.Equal(objectBytes(t, b, id), objectBytes(t, a, id)) {
		t.Fatal("pulled bytes differ from the source's")
	}
	// Pulling it again is answered from the store.
	before := served(a)
	if off, err := b.Pull(context.Background(), id, a.TCPAddr(), size); err != nil || off != offs[0] {
		t.Fatalf("second pull: offset %d, %v; want %d", off, err, offs[0])
	}
	if served(a) != before {
		t.Errorf("a sealed local copy was pulled again")
	}
}

func TestPullCancelledDeletesPartialObject(t *testing.T) {
	a := startNode(t, 64<<20, "t")
	b := startNode(t, 64<<20, "t")
	id := putObject(t, a, 8<<20, 3)
	g := newGate(t, a.TCPAddr())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.Pull(ctx, id, g.ln.Addr().String(), 8<<20)
		errc <- err
	}()
	waitUntil(t, "the pull to start", func() bool {
		_, ok := b.xfer.InFlight()[id]
		return ok
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if n := b.store.Len(); n != 0 {
		t.Errorf("%d objects left in the puller's store", n)
	}
	// A later pull, with the way open, works.
	close(g.open)
	if _, err := b.Pull(context.Background(), id, g.ln.Addr().String(), 8<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(objectBytes(t, b, id), objectBytes(t, a, id)) {
		t.Fatal("pulled bytes differ from the source's")
	}
}

// roundTrip makes a request from puller to source on the pooled connection
// and waits for the answer: whatever the source sent on it before (a free)
// has been handled by then.
func roundTrip(t *testing.T, puller, source *Raylet) {
	t.Helper()
	ctx := context.Background()
	c, err := puller.xfer.Link(ctx, source.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	missing := ids.ForPut()
	_, err = c.CallRaw(ctx, rpc.MReadChunk, &pb.ReadChunk{ObjectId: missing[:], Length: 1})
	var re *rpc.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("want a remote error for a missing object, got %v", err)
	}
}

func TestFreeAtSourceFreesPulledCopies(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	c := startNode(t, 16<<20, "t")
	id := putObject(t, a, 3<<20, 5)
	kept := putObject(t, a, 1<<20, 6)
	ctx := context.Background()
	for _, x := range []ids.ObjectID{id, kept} {
		if _, err := b.Pull(ctx, x, a.TCPAddr(), int64(len(objectBytes(t, a, x)))); err != nil {
			t.Fatal(err)
		}
	}
	// c pulls the copy on b: a chain a -> b -> c.
	if _, err := c.Pull(ctx, id, b.TCPAddr(), 3<<20); err != nil {
		t.Fatal(err)
	}
	a.FreeObjects([]ids.ObjectID{id})
	roundTrip(t, b, a)
	if _, _, ok := b.store.Lookup(id); ok {
		t.Error("b still has its copy of the object freed at a")
	}
	roundTrip(t, c, b)
	if _, _, ok := c.store.Lookup(id); ok {
		t.Error("c still has its copy of the copy b freed")
	}
	if _, _, ok := b.store.Lookup(kept); !ok {
		t.Error("b lost a copy of an object not freed")
	}
	// Nothing comes back round: a's table of readers of id is gone.
	for _, r := range []*Raylet{a, b, c} {
		if n := r.xfer.Readers(id); n != 0 {
			t.Errorf("%d readers of the freed object still recorded", n)
		}
	}
}

func TestPullEvictsOldestPulledCopies(t *testing.T) {
	a := startNode(t, 64<<20, "t")
	b := startNode(t, 10<<20, "t")
	ctx := context.Background()
	const size = 3 << 20
	var objs []ids.ObjectID
	for i := range 4 {
		objs = append(objs, putObject(t, a, size, byte(i)))
	}
	for _, id := range objs[:3] {
		if _, err := b.Pull(ctx, id, a.TCPAddr(), size); err != nil {
			t.Fatal(err)
		}
	}
	// 9 of 10 MiB used: the fourth needs the oldest copy's room.
	if _, err := b.Pull(ctx, objs[3], a.TCPAddr(), size); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, true, true} {
		if _, _, ok := b.store.Lookup(objs[i]); ok != want {
			t.Errorf("object %d in the store: %v, want %v", i, ok, want)
		}
	}
	if !bytes.Equal(objectBytes(t, b, objs[3]), objectBytes(t, a, objs[3])) {
		t.Fatal("pulled bytes differ from the source's")
	}

	// Primary objects are never evicted: next to c's own object of 8 MiB,
	// a pulled 3 MiB one cannot fit even with every pulled copy gone.
	c := startNode(t, 10<<20, "t")
	primary := putObject(t, c, 8<<20-4096, 9)
	small := putObject(t, a, 1<<20, 10)
	if _, err := c.Pull(ctx, small, a.TCPAddr(), 1<<20); err != nil {
		t.Fatal(err)
	}
	_, err := c.Pull(ctx, objs[1], a.TCPAddr(), size)
	if !errors.Is(err, objstore.ErrFull) {
		t.Fatalf("want objstore.ErrFull, got %v", err)
	}
	if _, _, ok := c.store.Lookup(primary); !ok {
		t.Error("a primary object was evicted")
	}
	if _, _, ok := c.store.Lookup(objs[1]); ok {
		t.Error("the object that did not fit is in the store")
	}
	if _, _, ok := c.store.Lookup(small); ok {
		t.Error("the pulled copy was not evicted before giving up")
	}
}

func TestPullRedialsBrokenConnection(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	ctx := context.Background()
	x := putObject(t, a, 1<<20, 1)
	y := putObject(t, a, 1<<20, 2)
	if _, err := b.Pull(ctx, x, a.TCPAddr(), 1<<20); err != nil {
		t.Fatal(err)
	}
	c, err := b.xfer.Link(ctx, a.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if _, err := b.Pull(ctx, y, a.TCPAddr(), 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(objectBytes(t, b, y), objectBytes(t, a, y)) {
		t.Fatal("pulled bytes differ from the source's")
	}
}

func TestPullObjectRequestFromWorker(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	id := putObject(t, a, 2<<20+1, 4)
	ctx := context.Background()
	conn, err := rpc.Dial(ctx, b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := &rayletclient.Client{Conn: conn}
	off, err := cl.PullObject(ctx, id, a.TCPAddr(), 2<<20+1)
	if err != nil {
		t.Fatal(err)
	}
	if lo, _, ok := b.store.Lookup(id); !ok || lo != off {
		t.Fatalf("pulled to offset %d, store has it at %d (%v)", off, lo, ok)
	}
	if !bytes.Equal(objectBytes(t, b, id), objectBytes(t, a, id)) {
		t.Fatal("pulled bytes differ from the source's")
	}
	_, err = cl.PullObject(ctx, ids.ForPut(), a.TCPAddr(), 10)
	if !errors.Is(err, ErrObjectLost) {
		t.Fatalf("want ErrObjectLost through the client, got %v", err)
	}
}

func TestPullEmptyObject(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	id := putObject(t, a, 0, 0)
	if _, err := b.Pull(context.Background(), id, a.TCPAddr(), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.store.Lookup(id); !ok {
		t.Fatal("empty object not sealed on the puller")
	}
	_, err := b.Pull(context.Background(), ids.ForPut(), a.TCPAddr(), 0)
	if !errors.Is(err, ErrObjectLost) {
		t.Fatalf("want ErrObjectLost for a missing empty object, got %v", err)
	}
}

func TestPullAfterCloseFails(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	id := putObject(t, a, 1<<20, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := b.Pull(context.Background(), id, a.TCPAddr(), 1<<20)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("want ErrClosed, got %v", err)
	}
}

func TestCloseEndsEveryTransferGoroutine(t *testing.T) {
	a := startNode(t, 64<<20, "t")
	b := startNode(t, 64<<20, "t")
	ctx := context.Background()
	done := putObject(t, a, 4<<20, 1)
	if _, err := b.Pull(ctx, done, a.TCPAddr(), 4<<20); err != nil {
		t.Fatal(err)
	}
	// A pull held up at the gate, and one a worker asked for, are in
	// flight when b closes.
	g := newGate(t, a.TCPAddr())
	held := putObject(t, a, 4<<20, 2)
	errc := make(chan error, 2)
	go func() {
		_, err := b.Pull(ctx, held, g.ln.Addr().String(), 4<<20)
		errc <- err
	}()
	conn, err := rpc.Dial(ctx, b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	asked := putObject(t, a, 1<<20, 3)
	go func() {
		_, err := (&rayletclient.Client{Conn: conn}).PullObject(ctx, asked, g.ln.Addr().String(), 1<<20)
		errc <- err
	}()
	waitUntil(t, "both pulls to start", func() bool {
		return len(b.xfer.InFlight()) == 2
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; err == nil {
			t.Error("a pull cut short by Close succeeded")
		}
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, f := range []string{"internal/raylet/transfer.", "internal/raylet.(*Raylet).servePull", "internal/raylet.(*Raylet).goTracked", "internal/raylet.(*Raylet).Pull"} {
		if strings.Contains(stacks, f) {
			t.Errorf("a goroutine in %s outlived Close:\n%s", f, stacks)
		}
	}
}

// A copy that a local process pulled (and may have mapped) is not evicted
// while that process is connected; once it goes, the copy may be.
func TestPulledCopyHeldByItsReaderIsNotEvicted(t *testing.T) {
	a := startNode(t, 64<<20, "t")
	b := startNode(t, 10<<20, "t")
	ctx := context.Background()
	const size = 3 << 20
	var objs []ids.ObjectID
	for i := range 4 {
		objs = append(objs, putObject(t, a, size, byte(i)))
	}
	conn, err := rpc.Dial(ctx, b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	reader := &rayletclient.Client{Conn: conn}
	if _, err := reader.PullObject(ctx, objs[0], a.TCPAddr(), size); err != nil {
		t.Fatal(err)
	}
	for _, id := range objs[1:3] {
		if _, err := b.Pull(ctx, id, a.TCPAddr(), size); err != nil {
			t.Fatal(err)
		}
	}
	// Full: the fourth takes the room of the oldest copy nobody pins.
	if _, err := b.Pull(ctx, objs[3], a.TCPAddr(), size); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true} {
		if _, _, ok := b.store.Lookup(objs[i]); ok != want {
			t.Errorf("object %d in the store: %v, want %v", i, ok, want)
		}
	}
	if !bytes.Equal(objectBytes(t, b, objs[0]), objectBytes(t, a, objs[0])) {
		t.Fatal("the held copy's bytes changed")
	}
	// The reader goes: its copy is the oldest, and goes next.
	_ = conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for held := 1; held > 0; {
		b.spill.mu.Lock()
		held = len(b.spill.pins)
		b.spill.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the pin of a reader that left was not released")
		}
		runtime.Gosched() // the raylet notices the closed connection on its own goroutine
	}
	if _, err := b.Pull(ctx, objs[1], a.TCPAddr(), size); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := b.store.Lookup(objs[0]); ok {
		t.Error("the copy of a reader that left was kept over a new pull")
	}
}
