package objstore

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// present reports, from /proc/self/pagemap, how many of the pages of b are
// mapped into this process.
func present(t *testing.T, b []byte) int {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatalf("open pagemap: %v", err)
	}
	defer f.Close()
	first := uintptr(unsafe.Pointer(&b[0])) / pageSize
	n := (len(b) + pageSize - 1) / pageSize
	buf := make([]byte, 8*n)
	if _, err := f.ReadAt(buf, int64(first*8)); err != nil {
		t.Fatalf("read pagemap: %v", err)
	}
	count := 0
	for i := range n {
		if binary.LittleEndian.Uint64(buf[8*i:])&(1<<63) != 0 {
			count++
		}
	}
	return count
}

func TestWriteAtRoundTrip(t *testing.T) {
	a := newArena(t, 8*writeChunk)
	other, err := OpenArena(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// Odd offsets and sizes, across chunk boundaries; some regions
	// written twice, so that both ways of writing are used.
	cases := []struct{ off, size int64 }{
		{0, 1}, {7, 3*writeChunk + 5}, {writeChunk - 3, 6}, {4*writeChunk + 1, 2*writeChunk + 11},
		{7, 3*writeChunk + 5}, {8*writeChunk - 9, 9},
	}
	for _, c := range cases {
		src := make([]byte, c.size)
		rand.Read(src)
		n, err := a.WriteAt(src, c.off)
		if err != nil || n != len(src) {
			t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", c.size, c.off, n, err)
		}
		for name, ar := range map[string]*Arena{"this process's view": a, "another mapping": other} {
			got, err := ar.View(c.off, c.size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, src) {
				t.Fatalf("after WriteAt(%d bytes, %d), %s differs", c.size, c.off, name)
			}
		}
	}
}

func TestWriteAtSparesFaultsAndMapsRewrites(t *testing.T) {
	const size = 4 * writeChunk
	a := newArena(t, 8*writeChunk)
	dst, err := a.Slice(writeChunk, size)
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte{1, 2, 3, 4}, size/4)
	if _, err := a.WriteAt(src, writeChunk); err != nil {
		t.Fatal(err)
	}
	if n := present(t, dst); n != 0 {
		t.Fatalf("a first write mapped %d pages into this process, want 0 (pwrite)", n)
	}
	// Written again: copied through the mapping, which maps every page.
	src2 := bytes.Repeat([]byte{5, 6, 7, 8}, size/4)
	if _, err := a.WriteAt(src2, writeChunk); err != nil {
		t.Fatal(err)
	}
	if n, want := present(t, dst), size/pageSize; n != want {
		t.Fatalf("%d of %d pages mapped after a second write", n, want)
	}
	for c := int64(1); c <= 4; c++ {
		if !testBit(a.w.mapped, c) {
			t.Fatalf("chunk %d not marked mapped", c)
		}
	}
	if !bytes.Equal(dst, src2) {
		t.Fatal("the second write did not land")
	}
	if n := a.w.touched.Load(); n != 0 {
		t.Fatalf("the mapper mapped %d chunks without a prefault window", n)
	}
}

func TestWriteAtErrors(t *testing.T) {
	a := newArena(t, writeChunk)
	for _, c := range []struct {
		name string
		off  int64
		size int
	}{
		{"negative offset", -1, 1},
		{"past the end", writeChunk - 1, 2},
		{"offset past the end", writeChunk + 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := a.WriteAt(make([]byte, c.size), c.off)
			if !errors.Is(err, ErrOutOfRange) || n != 0 {
				t.Fatalf("WriteAt = %d, %v; want 0, ErrOutOfRange", n, err)
			}
		})
	}
	a.Close()
	if _, err := a.WriteAt([]byte{1}, 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("WriteAt after Close: %v, want ErrOutOfRange", err)
	}
}

// TestCloseStopsMapper closes an arena while its mapper has work: Close
// returns only once the mapper has stopped, and later writes start none.
func TestCloseStopsMapper(t *testing.T) {
	a, err := CreateArena(arenaPath(t), 64*writeChunk)
	if err != nil {
		t.Fatal(err)
	}
	src := make([]byte, 64*writeChunk)
	a.PrefaultAhead(63 * writeChunk)
	if _, err := a.WriteAt(src[:writeChunk], 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.w.done:
	default:
		t.Fatal("Close returned with the mapper running")
	}
	before := a.w.touched.Load()
	if _, err := a.WriteAt(src, 0); err == nil {
		t.Fatal("WriteAt after Close succeeded")
	}
	queued := len(a.w.work)
	for c := range int64(64) {
		clearBit(a.w.queued, c)
		a.w.enqueue(c)
	}
	if a.w.touched.Load() != before || len(a.w.work) != queued {
		t.Fatal("a chunk was queued or mapped after Close")
	}
}

// BenchmarkWriteAt64MiBCold is BenchmarkPut64MiBCold written with WriteAt.
func BenchmarkWriteAt64MiBCold(b *testing.B) {
	src := make([]byte, size64)
	rand.Read(src)
	b.SetBytes(size64)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		a, err := CreateArena(arenaPath(b), size64)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := a.WriteAt(src, 0); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		a.Close()
		a.Remove()
		b.StartTimer()
	}
}

// A large put that lands beyond what the window has mapped tells the
// mapper to stop waiting for idle time.
func TestWriteBeyondTheWindowMarksItBehind(t *testing.T) {
	a := newArena(t, 8*writeChunk)
	a.PrefaultAhead(writeChunk)
	deadline := time.Now().Add(10 * time.Second)
	for a.w.touched.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the window's first chunk was not mapped in 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := a.WriteAt(make([]byte, writeChunk), 0); err != nil {
		t.Fatal(err)
	}
	if a.w.behind.Load() {
		t.Fatal("a write into the mapped window marked it behind")
	}
	if _, err := a.WriteAt(make([]byte, 2*writeChunk), 4*writeChunk); err != nil {
		t.Fatal(err)
	}
	if !a.w.behind.Load() {
		t.Fatal("a 2 MiB write beyond the window did not mark it behind")
	}
}

// Once behind, the mapper maps a chunk from inside the kernel
// (MADV_POPULATE_WRITE): every page present, writable, and the bytes
// already there (written through the file) as they were.
func TestBehindMapsAChunkKeepingItsBytes(t *testing.T) {
	a := newArena(t, 4*writeChunk)
	old := make([]byte, writeChunk)
	for i := range old {
		old[i] = byte(i*13 + 5)
	}
	if _, err := a.WriteAt(old, 2*writeChunk); err != nil { // pwrite: not mapped here
		t.Fatal(err)
	}
	all, _ := a.Slice(0, 4*writeChunk)
	if n := present(t, all[2*writeChunk:3*writeChunk]); n != 0 {
		t.Fatalf("%d pages mapped by a write through the file", n)
	}
	a.w.behind.Store(true)
	if !a.mapChunk(2, func(step func()) bool { step(); return true }) {
		t.Fatal("mapChunk stopped on an open arena")
	}
	if n, want := present(t, all[2*writeChunk:3*writeChunk]), writeChunk/pageSize; n != want {
		t.Fatalf("%d of the chunk's %d pages mapped", n, want)
	}
	if !bytes.Equal(all[2*writeChunk:3*writeChunk], old) {
		t.Fatal("mapping the chunk changed its bytes")
	}
}

// While the process exchanges messages, the mapper waits; it maps once
// they stop.
func TestPrefaultWaitsWhileTheProcessTalks(t *testing.T) {
	a := newArena(t, 8*writeChunk)
	var busy atomic.Bool
	var count, looks atomic.Uint64
	busy.Store(true)
	a.w.stall = cpuStall{read: func() (uint64, bool) { return 0, true }} // no task ever waits for a CPU
	a.PrefaultWhenQuiet(func() uint64 {
		looks.Add(1)
		if busy.Load() {
			return count.Add(1) // a message since the last look
		}
		return count.Load()
	})
	a.PrefaultAhead(2 * writeChunk)
	mapsOnlyOnceFreed(t, a, func() bool { return looks.Load() >= 5 }, func() { busy.Store(false) }, "the process talked")
}

// mapsOnlyOnceFreed checks that the mapper of a, whose window is 2 chunks,
// maps nothing by the time looked says it has looked enough, while why
// holds, and maps the window once free has ended it.
func mapsOnlyOnceFreed(t *testing.T, a *Arena, looked func() bool, free func(), why string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !looked() {
		if time.Now().After(deadline) {
			t.Fatalf("the mapper did not look often enough in 10s while %s", why)
		}
		time.Sleep(time.Millisecond)
	}
	if n := a.w.touched.Load(); n != 0 {
		t.Fatalf("the mapper mapped %d chunks while %s", n, why)
	}
	free()
	for a.w.touched.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 chunks mapped in 10s once no longer %s", a.w.touched.Load(), why)
		}
		time.Sleep(time.Millisecond)
	}
}

// While tasks wait for a CPU, the mapper of a quiet process waits, as a
// thread of the idle scheduling class would; it maps once they do not.
func TestPrefaultWaitsWhileTheCPUsAreBusy(t *testing.T) {
	a := newArena(t, 8*writeChunk)
	var spare atomic.Bool
	var reads atomic.Uint64
	var stalled uint64 // the mapper's own
	a.w.stall = cpuStall{read: func() (uint64, bool) {
		reads.Add(1)
		if !spare.Load() {
			stalled += 1e6 // a second of waits between any two reads
		}
		return stalled, true
	}}
	a.PrefaultWhenQuiet(func() uint64 { return 0 }) // a quiet process
	a.PrefaultAhead(2 * writeChunk)
	// Before its first measure the mapper may map a step; not a chunk.
	mapsOnlyOnceFreed(t, a, func() bool { return reads.Load() >= 4 }, func() { spare.Store(true) }, "tasks waited for CPUs")
}

// While goroutines of this process wait for a Go processor, the mapper of
// a quiet process on idle CPUs waits: it would take its time from them
// (with GOMAXPROCS 1, it made a driver's in-process placement groups 8
// times slower). It maps once they are done.
func TestPrefaultWaitsWhileTheProcessComputes(t *testing.T) {
	a := newArena(t, 8*writeChunk)
	a.w.stall = cpuStall{read: func() (uint64, bool) { return 0, true }} // no task waits for a CPU
	var looks atomic.Uint64
	a.PrefaultWhenQuiet(func() uint64 { looks.Add(1); return 0 }) // nor talks
	// One spinning goroutine more than there are processors: one of them
	// always waits for a processor.
	done := make(chan struct{})
	var spinners sync.WaitGroup
	for range runtime.GOMAXPROCS(0) + 1 {
		spinners.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	defer func() {
		select {
		case <-done:
		default:
			close(done)
		}
		spinners.Wait()
	}()
	a.PrefaultAhead(2 * writeChunk)
	mapsOnlyOnceFreed(t, a, func() bool { return looks.Load() >= 5 }, func() { close(done); spinners.Wait() }, "goroutines waited for a processor")
}

func TestPrefaultAhead(t *testing.T) {
	a := newArena(t, 16*writeChunk)
	all, _ := a.Slice(0, 16*writeChunk)
	waitMapped := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for a.w.touched.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d chunks mapped in 10s, want %d", a.w.touched.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Bytes already in the arena, written through the file (pwrite): the
	// mapper must keep them.
	old := make([]byte, writeChunk)
	for i := range old {
		old[i] = byte(i*7 + 1)
	}
	if _, err := a.WriteAt(old, 12*writeChunk); err != nil {
		t.Fatal(err)
	}
	// Arming the window maps [0, 4 MiB) at once, before any write.
	a.PrefaultAhead(4 * writeChunk)
	waitMapped(4)
	if n, want := present(t, all[:4*writeChunk]), 4*writeChunk/pageSize; n != want {
		t.Fatalf("%d of the window's %d pages mapped", n, want)
	}
	if n := present(t, all[4*writeChunk:]); n != 0 {
		t.Fatalf("%d pages mapped outside the window (the write used pwrite)", n)
	}
	// A write ending at 2 MiB is copied (mapped) and moves the window to
	// [2 MiB, 6 MiB): chunks 4 and 5 are mapped.
	if _, err := a.WriteAt(make([]byte, 2*writeChunk), 0); err != nil {
		t.Fatal(err)
	}
	waitMapped(6)
	if n, want := present(t, all[:6*writeChunk]), 6*writeChunk/pageSize; n != want {
		t.Fatalf("%d of the first 6 MiB's %d pages mapped", n, want)
	}
	// A write ending at 6 MiB moves the window to [6 MiB, 10 MiB): chunks
	// 4 and 5 are copied into (mapped already), 6 to 9 are mapped.
	if _, err := a.WriteAt(make([]byte, 2*writeChunk), 4*writeChunk); err != nil {
		t.Fatal(err)
	}
	waitMapped(10)
	for c := int64(6); c < 10; c++ {
		if !testBit(a.w.mapped, c) {
			t.Fatalf("chunk %d of the moved window is not mapped", c)
		}
	}
	if n := present(t, all[10*writeChunk:12*writeChunk]); n != 0 {
		t.Fatalf("%d pages mapped beyond the moved window", n)
	}
	// A window over bytes already written leaves them as they are.
	a.PrefaultAhead(16 * writeChunk)
	if _, err := a.WriteAt(make([]byte, writeChunk), 6*writeChunk); err != nil {
		t.Fatal(err)
	}
	waitMapped(16)
	if !bytes.Equal(all[12*writeChunk:13*writeChunk], old) {
		t.Fatal("mapping the window changed bytes it covered")
	}
}
