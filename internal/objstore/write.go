package objstore

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
// way to write them fast is to map them before the write. A process that
// puts large objects (the driver) calls PrefaultAhead: a goroutine, the
// mapper, maps a window of the arena beyond the highest offset the process
// has written (at first from the arena's start), where the store's
// allocator, which carves fresh space from the low end of its free space,
// places the next objects. A put that lands there copies at memcpy speed.
// Until a large put has outrun it, the mapper maps only while the process
// exchanges no message (PrefaultWhenQuiet), none of its goroutines waits
// for a Go processor and the CPUs have time to spare: a driver that has
// just started and is busy loses nothing to it, and one that computes the
// data it will put lends it a CPU it does not use (see run).

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
	mapper  func(chunk int64, gate func(step func()) bool) bool
	touched atomic.Int64 // chunks the mapper has mapped, for tests
	behind  atomic.Bool  // a write went to chunks neither written nor mapped yet
	// activity, when set, grows while the process exchanges messages: the
	// mapper waits until it stands still (quiet).
	activity   func() uint64
	cpu        idleCPU       // the machine's idle CPUs; the mapper's own
	stall      cpuStall      // the waits for a CPU; the mapper's own
	lastLook   uint64        // activity when the mapper last looked; the mapper's own
	busyPoll   time.Duration // the wait after the last look, which saw a change (0: none did); the mapper's own
	quietSince time.Time     // when the mapper saw lastLook first; the mapper's own

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
		cpu:    idleCPU{read: readProcStat},
		stall:  cpuStall{read: readCPUPressure},
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

// run is the mapper: it maps the chunks it is given until stopped, a
// step (mapStep) at a time. Until a write has had to go to pages it had
// not mapped yet (w.behind), it maps a step only once the process has been
// quiet for quietPoll, none of its goroutines waits for a processor and
// the machine has CPU time to spare, looking before every step
// (quietAndIdle). Once one has, the process is known to
// put large objects faster than quiet time maps them, and it maps without
// waiting.
//
// It is an ordinary goroutine, on no thread of its own, which parks every
// mapBurst when it is alone with one Go processor. It used to run on a
// thread of the idle scheduling class (SCHED_IDLE), which the kernel runs
// only on a CPU nothing else wants; but a goroutine locked to such a
// thread keeps the Go processor it runs on while the kernel lets the
// thread wait: with GOMAXPROCS at 1 that stopped the whole process, which
// then looked quiet, so that the mapper went on mapping, and a driver's
// synchronous calls lost 15 to 40%. A goroutine that yields without
// parking starves the network poller the same way.
func (w *writeState) run() {
	defer close(w.done)
	parked := time.Now()
	gate := func(step func()) bool {
		if !w.behind.Load() && !w.quietAndIdle() {
			return false
		}
		start := time.Now()
		if w.behind.Load() {
			step()
		} else {
			lowly(step)
		}
		w.cpu.mapped(time.Since(start))
		if !w.behind.Load() && runtime.GOMAXPROCS(0) == 1 && time.Since(parked) >= mapBurst {
			// Park, so that the scheduler polls the network: a goroutine
			// that only yields (runtime.Gosched) is run again at once, and
			// what arrives meanwhile waits for the next poll, up to 10 ms.
			time.Sleep(stepPause)
			parked = time.Now()
		}
		return true
	}
	for {
		select {
		case <-w.stop:
			return
		case c := <-w.work:
			if w.mapper(c, gate) {
				setBit(w.mapped, c)
				w.touched.Add(1)
			}
			clearBit(w.queued, c)
		}
	}
}

// spareCPU reports whether the CPUs this process may use have had time to
// spare lately: no task waited for one (cpuStall), or, where the kernel
// keeps no such count, the machine left minIdleCPUs idle (idleCPU).
func (w *writeState) spareCPU() bool {
	if spare, measured, there := w.stall.spareTime(); there {
		return spare || !measured // no measure yet: the first one comes after a step
	}
	cpus, measured := w.cpu.idleCPUs()
	return measured && cpus >= minIdleCPUs
}

// runnable reads how many goroutines of this process wait for a Go
// processor (about 60 ns).
func runnable() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// stepNice is the nice value of the thread that maps a step in quiet
// time: a task that wants the CPU meanwhile takes it from the mapper at
// once (the CPU shares of nice 0 and 19 are 1024 to 15), and the mapper
// gets it back within a few milliseconds, so that the Go processor it
// holds meanwhile is not kept long. (In the idle class, SCHED_IDLE, it
// would wait for an idle CPU, holding the processor as long.)
const stepNice = 19

// lowly runs f on this goroutine's thread at stepNice, then puts the
// thread's nice value back; where the process may not put it back (an
// unprivileged process whose RLIMIT_NICE forbids raising it again), it
// runs f as it is, for the thread goes back to run other goroutines.
func lowly(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid) // 20 - nice, as the system call says it
	if err != nil || raw > maxRaisable() {
		f()
		return
	}
	if unix.Setpriority(unix.PRIO_PROCESS, tid, stepNice) != nil {
		f()
		return
	}
	defer func() { _ = unix.Setpriority(unix.PRIO_PROCESS, tid, 20-raw) }()
	f()
}

// maxRaisable is the highest priority (20 - nice) this process may give a
// thread back once it lowered it: any as root, else what RLIMIT_NICE
// allows. Looked up once.
var maxRaisable = sync.OnceValue(func() int {
	if os.Geteuid() == 0 {
		return 40
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NICE, &lim) != nil {
		return 0
	}
	return int(min(lim.Cur, 40))
})

// minIdleCPUs is the idle CPU time, in CPUs, the machine must have had
// over the last idleSample (the mapper's own time counting as idle) for
// the mapper to map in quiet time. A mapper that shares a busy CPU gets
// about half of it, and stops.
const minIdleCPUs = 0.75

// quietAndIdle returns once the process is quiet (see quiet), none of its
// goroutines waits for a Go processor, and the CPUs have time to spare
// (see spareCPU), or a put has outrun the window: what a thread of the
// idle scheduling class would wait for, without its cost (see run). It
// reports false if the mapper is stopped meanwhile.
//
// A goroutine waiting for a processor means the process computes: a step
// now would take its time from the process's own goroutines, whatever the
// nice value of the thread, and neither the kernel's counts (which do not
// see goroutines waiting for a processor) nor the quiet of the network
// tell it. Without this look, a driver whose placement groups are all in
// process went 8 times slower with GOMAXPROCS at 1 while the window was
// mapped. The mapper then looks again after stepPause, then twice as
// long each time, up to stallSample.
func (w *writeState) quietAndIdle() bool {
	if w.activity == nil {
		return true // not asked to wait (PrefaultWhenQuiet)
	}
	backoff := stepPause
	for {
		if !w.quiet() {
			return false
		}
		if w.behind.Load() {
			return true
		}
		wait := stallSample
		switch {
		case runnable() > 0:
			wait, backoff = backoff, min(2*backoff, stallSample)
		case w.spareCPU():
			return true
		}
		select {
		case <-w.stop:
			return false
		case <-time.After(wait):
		}
	}
}

// quietPoll is how long the process must have exchanged no message for
// the mapper to map, and how long it waits before it looks again after a
// first change. While every look sees the activity change, it waits
// twice as long each time, up to maxBusyPoll: a driver that is busy for
// long (a loop of small puts) is not woken a thousand times a second.
const (
	quietPoll   = time.Millisecond
	maxBusyPoll = 16 * time.Millisecond
)

// quiet returns once the process has exchanged no message for quietPoll
// (w.activity has stood still at every look for that long), or a put has
// outrun the window. It reports false if the mapper is stopped meanwhile.
// The quiet time is measured from the look that saw the last change, not
// counted in looks, which come after every step.
//
// Mapping pages costs the CPU that maps them the host's time too (about a
// microsecond a page, a fault 8 to 20), which slowed a driver's
// synchronous calls by a third while the window was mapped: so the mapper
// maps only while the process is not talking.
func (w *writeState) quiet() bool {
	if w.activity == nil {
		return true
	}
	for {
		if w.behind.Load() {
			return true
		}
		var wait time.Duration
		if now := w.activity(); now != w.lastLook || w.quietSince.IsZero() {
			w.lastLook, w.quietSince = now, time.Now()
			w.busyPoll = min(max(2*w.busyPoll, quietPoll), maxBusyPoll)
			wait = w.busyPoll
		} else if wait = quietPoll - time.Since(w.quietSince); wait <= 0 {
			w.busyPoll = 0
			return true
		}
		select {
		case <-w.stop:
			return false
		case <-time.After(wait):
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

// While it maps in quiet time in a process of one Go processor
// (GOMAXPROCS 1), the mapper parks for stepPause (in effect up to a
// millisecond, the network poller's resolution, when nothing else runs)
// once it has mapped for mapBurst: a message that arrives meanwhile waits
// about mapBurst at most, and the window fills at half speed or more.
// With more processors, an idle one polls the network.
const (
	mapBurst  = time.Millisecond
	stepPause = 100 * time.Microsecond
)

// mapStep is how much of the arena the mapper maps between two looks at
// the process's activity: 16 pages, 200 to 300 µs of faults on a virtual
// machine.
const mapStep = 64 << 10

// mapChunk maps every page of chunk c of the arena into this process,
// writable, without changing any byte, mapStep bytes at a time, each
// through gate (which runs it, or reports false if the mapper is to stop):
// it adds zero to the first word of each page atomically. That is a write,
// so the fault allocates the page the file lacks and maps it writable (on
// a virtual machine that shadows page tables, the host's own fault is paid
// here too, which MADV_POPULATE_WRITE, faulting from inside the kernel,
// leaves to the put); and it is atomic, so a byte another process writes
// meanwhile is never lost. The arena's lock is taken per page so that
// Close never waits for more than one fault.
//
// Once a put has outrun the window (behind), the mapper maps with
// MADV_POPULATE_WRITE instead, a step per call: puts then come back to
// back, and a trap per page took the mapper twice the CPU, which the
// raylet spilling those puts wanted (spill_gigabytes went from 1.07 to
// 2.2 GB/s, 1.8 for the engine before the redesign, while a cold put
// kept its speed). It reports false if the arena is closed or gate
// stopped it.
func (a *Arena) mapChunk(c int64, gate func(step func()) bool) bool {
	start := c * writeChunk
	end := min(start+writeChunk, a.capacity)
	open := true
	for p := start; p < end && open; p += mapStep {
		ok := gate(func() {
			if a.w.behind.Load() {
				a.mu.RLock()
				if open = a.data != nil; open {
					_ = unix.Madvise(a.data[p:min(p+mapStep, end)], unix.MADV_POPULATE_WRITE)
				}
				a.mu.RUnlock()
				return
			}
			for q := p; q < min(p+mapStep, end) && open; q += pageSize {
				a.mu.RLock()
				if open = a.data != nil; open {
					atomic.AddUint32((*uint32)(unsafe.Pointer(&a.data[q])), 0)
				}
				a.mu.RUnlock()
			}
		})
		if !ok {
			return false
		}
	}
	return open
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
		} else {
			if w.window.Load() > 0 && end-pos >= writeChunk {
				w.behind.Store(true) // the window fell behind a large put
			}
			if err := a.pwrite(b[pos:end], off+pos); err != nil {
				return int(pos), err
			}
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
// arena mapped beyond the highest offset it has written (from the arena's
// start until it writes), in the background, on CPU time nothing else
// wants: large puts that land there are written at memcpy speed. The
// pages are allocated in the arena's file, so the window costs up to
// window bytes of the store's memory, and a page table for them. window
// <= 0 turns it off.
func (a *Arena) PrefaultAhead(window int64) {
	a.w.window.Store(max(window, 0))
	a.w.advance(0)
}

// PrefaultWhenQuiet has the prefault window's mapper map only while
// activity stands still, once it has for a millisecond (while the process
// exchanges no messages), no goroutine of the process waits for a Go
// processor, and the machine has CPU time to spare, until a put outruns
// the window (see quietAndIdle). Call it before PrefaultAhead.
func (a *Arena) PrefaultWhenQuiet(activity func() uint64) {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	if !a.w.started {
		a.w.activity = activity
	}
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
