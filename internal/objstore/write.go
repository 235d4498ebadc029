package objstore

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Writing objects into the arena.
//
// The first touch of a page of the mapping by a process costs a page
// fault. On the 2-CPU virtual machine this was measured on, whose host
// provides guest memory lazily and shadows page tables, that is 8 to 20 µs
// per 4 KiB page, so a copy into never-touched pages ran at 0.15 to 0.3
// GB/s against 10 GB/s for memcpy. pwrite(2) writes the file through the
// kernel's own mapping instead, sparing this process's faults: 2 to 5 GB/s
// into pages the machine has provided before, 0.4 GB/s into fresh ones.
// A page this process has mapped is fastest to write with a plain copy.
//
// So WriteAt pwrites into the chunks (of writeChunk bytes) this process
// meets for the first time, and copies into those it has written before
// (space being reused: mapping them now pays once for every later write)
// or mapped.
//
// Fresh pages cost the same wherever they are first touched, so the only
// way to write them fast is to touch them before the write. A process
// that puts large objects (the driver) calls PrefaultAhead: once it has
// written to the arena, one goroutine, on a low-priority thread, maps a
// window of the arena beyond the highest offset it has written, where the
// store's allocator, which carves fresh space from the low end of its
// free space, places the next objects. A put that lands there copies at
// memcpy speed. The window does not start at once: mapping 256 MiB took
// this machine's other CPU for a second, and slowed the actor calls of a
// driver that had just started by 10 to 30%.

// writeChunk is the granularity at which WriteAt tracks what this process
// has mapped.
const writeChunk = 1 << 20

// pageSize is the size of the pages touched to map a chunk.
const pageSize = 4096

// writeState tracks, per chunk of the arena, whether this process has
// written it (seen) and mapped every page of it (mapped), and runs the
// mapper of the prefault window.
type writeState struct {
	seen   []atomic.Uint64 // a bit per chunk: written by WriteAt before
	mapped []atomic.Uint64 // a bit per chunk: every page mapped here
	queued []atomic.Uint64 // a bit per chunk: waiting for the mapper

	mu      sync.Mutex // guards started, closed and the mapper's lifecycle
	started bool
	closed  bool
	work    chan int64    // chunks to map; buffered, never closed
	stop    chan struct{} // closed by stopMapper
	done    chan struct{} // closed when the mapper returns
	mapper  func(chunk int64) bool
	touched atomic.Int64 // chunks the mapper has mapped, for tests

	window   atomic.Int64 // bytes to keep mapped beyond frontier; 0: none
	frontier atomic.Int64 // the highest end offset WriteAt wrote
	ahead    atomic.Int64 // the window is queued up to here
	chunks   int64        // chunks in the arena
}

func newWriteState(capacity int64) *writeState {
	n := (capacity + writeChunk - 1) / writeChunk
	words := (n + 63) / 64
	return &writeState{
		seen:   make([]atomic.Uint64, words),
		mapped: make([]atomic.Uint64, words),
		queued: make([]atomic.Uint64, words),
		work:   make(chan int64, 1024),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		chunks: n,
	}
}

// advance queues the chunks of the window beyond end that are not mapped
// yet, once end passes the frontier.
func (w *writeState) advance(end int64) {
	win := w.window.Load()
	if win <= 0 {
		return
	}
	for {
		f := w.frontier.Load()
		if end <= f && w.ahead.Load() > 0 {
			return
		}
		if end < f {
			end = f
		}
		if w.frontier.CompareAndSwap(f, end) {
			break
		}
	}
	from := max(end/writeChunk, w.ahead.Load())
	to := min((end+win+writeChunk-1)/writeChunk, w.chunks)
	for c := from; c < to; c++ {
		if !testBit(w.mapped, c) {
			w.enqueue(c)
		}
	}
	for {
		a := w.ahead.Load()
		if to <= a || w.ahead.CompareAndSwap(a, to) {
			return
		}
	}
}

func testBit(b []atomic.Uint64, i int64) bool { return b[i/64].Load()&(1<<(i%64)) != 0 }

// setBit sets bit i and reports whether it was clear.
func setBit(b []atomic.Uint64, i int64) bool {
	m := uint64(1) << (i % 64)
	return b[i/64].Or(m)&m == 0
}

func clearBit(b []atomic.Uint64, i int64) { b[i/64].And(^(uint64(1) << (i % 64))) }

// enqueue hands chunk c to the mapper, starting it if need be; a chunk
// already queued, or one the queue has no room for, is passed over (a
// later write queues it again).
func (w *writeState) enqueue(c int64) {
	if !setBit(w.queued, c) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		clearBit(w.queued, c)
		return
	}
	if !w.started {
		w.started = true
		go w.run()
	}
	select {
	case w.work <- c:
	default:
		clearBit(w.queued, c)
	}
}

// mapperNice is the mapper thread's nice value: it takes CPU time others
// want at about a tenth of their share. At 0 a window started with the
// cluster slowed its first task by half on a busy 2-CPU machine; at 19 a
// loaded machine starved it.
const mapperNice = 10

// run is the mapper: it maps the chunks it is given until stopped. It
// runs on a thread of its own at a low priority (mapperNice), so that it
// mostly uses CPU time nothing else wants; the thread ends with it,
// priority and all.
func (w *writeState) run() {
	defer close(w.done)
	runtime.LockOSThread() // never unlocked: the thread exits with run
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), mapperNice)
	for {
		select {
		case <-w.stop:
			return
		case c := <-w.work:
			if w.mapper(c) {
				setBit(w.mapped, c)
				w.touched.Add(1)
			}
			clearBit(w.queued, c)
		}
	}
}

// stopMapper stops the mapper, if it runs, and waits for it; no chunk is
// mapped afterwards.
func (w *writeState) stopMapper() {
	w.mu.Lock()
	started := w.started && !w.closed
	w.closed = true
	if started {
		close(w.stop)
	}
	w.mu.Unlock()
	if started {
		<-w.done
	}
}

// touchSink keeps the mapper's reads from being optimized away.
var touchSink atomic.Uint32

// mapChunk maps every page of chunk c of the arena into this process,
// writable: MADV_POPULATE_WRITE allocates the pages the file lacks and
// fills this process's page table, without changing any byte; then a read
// of a byte of each page makes the mapping usable at full speed (on a
// virtual machine that shadows page tables, the first access costs the
// host's fault). It reports false if the arena is closed.
func (a *Arena) mapChunk(c int64) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.data == nil {
		return false
	}
	start := c * writeChunk
	end := min(start+writeChunk, a.capacity)
	// Kernels before 5.14 lack the advice: the reads below fault the
	// pages in, one by one.
	_ = unix.Madvise(a.data[start:end], unix.MADV_POPULATE_WRITE)
	var s byte
	for p := start; p < end; p += pageSize {
		s += a.data[p]
	}
	touchSink.Add(uint32(s))
	return true
}

// WriteAt writes b to the arena at offset off, as io.WriterAt: it copies
// through this process's mapping into the chunks this process has mapped
// or written before, and writes with pwrite(2) into the others, which
// spares the page faults of pages it never touched. It returns len(b) and nil, or an
// error wrapping ErrOutOfRange for a range outside the arena (writing
// nothing), or the system's error.
func (a *Arena) WriteAt(b []byte, off int64) (int, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	dst, err := a.sub(a.data, off, int64(len(b)))
	if err != nil {
		return 0, err
	}
	w := a.w
	// Copy where this process mapped the chunk, or wrote it before (it
	// is being reused: mapping it now pays once for every later write);
	// pwrite into chunks it meets for the first time.
	copies := func(c int64) bool { return testBit(w.mapped, c) || testBit(w.seen, c) }
	for pos := int64(0); pos < int64(len(b)); {
		// The run [pos, end) of chunks that are all copied into, or none.
		cp := copies((off + pos) / writeChunk)
		end := pos
		for end < int64(len(b)) {
			c := (off + end) / writeChunk
			if copies(c) != cp {
				break
			}
			end = min(int64(len(b)), (c+1)*writeChunk-off)
		}
		if cp {
			copy(dst[pos:end], b[pos:end])
		} else if err := a.pwrite(b[pos:end], off+pos); err != nil {
			return int(pos), err
		}
		pos = end
	}
	// The chunks written whole: seen now, and mapped if copied into.
	for c := (off + writeChunk - 1) / writeChunk; (c+1)*writeChunk <= off+int64(len(b)); c++ {
		if !setBit(w.seen, c) {
			setBit(w.mapped, c)
		}
	}
	w.advance(off + int64(len(b)))
	return len(b), nil
}

// PrefaultAhead has this process keep a window of window bytes of the
// arena mapped beyond the highest offset it has written, in the
// background, from its next WriteAt on: large puts that land there are
// written at memcpy speed. The pages are allocated in the arena's file, so
// the window costs up to window bytes of memory. A process that never
// writes to the arena pays nothing. window <= 0 turns it off.
func (a *Arena) PrefaultAhead(window int64) {
	a.w.window.Store(max(window, 0))
}

// pwrite writes all of b at off of the arena's file; a.mu is held.
func (a *Arena) pwrite(b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(a.fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "write", Path: a.path, Err: err}
		}
		if n == 0 {
			return fmt.Errorf("objstore: write %s at %d: no progress", a.path, off)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
