package rayo

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestActorScale creates many actors (100, or RAYO_SCALE of them), calls
// each once, then releases every handle, and reports what that costs: the
// time taken, the worker processes (this process's children) before, at
// the peak and after, the memory of an actor's process, and that the
// processes go back to the pool's size once the handles are gone.
func TestActorScale(t *testing.T) {
	n := actorScaleN(t)
	const pool = 2
	restart(t, NumCPUs(pool))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+time.Duration(n)*100*time.Millisecond)
	defer cancel()

	// The fresh cluster starts its pool; wait for it.
	r := actorScaleReport{n: n}
	r.before = waitChildren(t, func(k int) bool { return k >= pool }, 10*time.Second)
	r.self0 = takeScaleSnapshot()

	start := time.Now()
	actors := createCounters(t, n)
	r.submitted = time.Since(start)
	callCountersOnce(t, ctx, actors)
	r.created = time.Since(start)

	// Every actor is alive now (its handle is held): measure.
	peak := childProcs()
	r.self1 = takeScaleSnapshot()
	for _, p := range peak {
		if p.state != 'Z' {
			r.sum.add(readProcMem(p.pid))
		}
	}
	r.live = countLive(peak)

	releaseStart := time.Now()
	for _, a := range actors {
		a.Release()
	}
	r.released = time.Since(releaseStart)
	actors = nil
	runtime.GC()
	// Actors stop once their handles are gone; workers the burst started
	// beyond the pool are stopped after an idle timeout.
	r.after = waitChildren(t, func(k int) bool { return k <= pool }, 30*time.Second+time.Duration(n)*20*time.Millisecond)
	r.settled = time.Since(releaseStart)

	r.log(t)
	if r.live < n {
		t.Errorf("only %d worker processes at the peak for %d actors: each actor should have its own", r.live, n)
	}
	if k := countLive(r.after); k > pool {
		t.Errorf("%d worker processes %v after releasing every actor, want the pool's %d", k, pidsOf(r.after), pool)
	}
}

// actorScaleN is the number of actors TestActorScale creates: 100, or
// RAYO_SCALE if set.
func actorScaleN(t *testing.T) int {
	t.Helper()
	n := 100
	if s := os.Getenv("RAYO_SCALE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("RAYO_SCALE=%q: want a positive number of actors", s)
		}
		n = v
	}
	return n
}

// createCounters creates n Counter actors and fails the test if one of
// them cannot be created.
func createCounters(t *testing.T, n int) []Actor[*Counter] {
	t.Helper()
	actors := make([]Actor[*Counter], n)
	for i := range actors {
		actors[i] = newCounter.Remote()
		if err := actors[i].Err(); err != nil {
			t.Fatalf("creating actor %d: %v", i, err)
		}
	}
	return actors
}

// callCountersOnce calls Incr once on each actor and checks that each
// answers 1.
func callCountersOnce(t *testing.T, ctx context.Context, actors []Actor[*Counter]) {
	t.Helper()
	refs := make([]Ref[int], len(actors))
	for i, a := range actors {
		refs[i] = incr.Remote(a)
	}
	vs, err := GetAll(ctx, refs)
	if err != nil {
		t.Fatalf("first calls on %d actors: %v", len(actors), err)
	}
	for i, v := range vs {
		if v != 1 {
			t.Fatalf("actor %d: first Incr gave %d, want 1", i, v)
		}
	}
}

// scaleSnapshot is the free memory of the machine, and the open files,
// memory and threads of this process, at one moment.
type scaleSnapshot struct {
	mem     uint64
	fds     int
	self    procMem
	threads int
}

// takeScaleSnapshot measures a scaleSnapshot now.
func takeScaleSnapshot() scaleSnapshot {
	s := scaleSnapshot{mem: memAvailable(), fds: openFDs()}
	s.self, s.threads = readProcMem(os.Getpid()), threads()
	return s
}

// actorScaleReport is what TestActorScale measured: self0 before the
// actors were created, self1 and sum at the peak.
type actorScaleReport struct {
	n                                     int
	before, after                         []proc
	live                                  int
	sum                                   procMem
	self0, self1                          scaleSnapshot
	submitted, created, released, settled time.Duration
}

// log reports the times, the worker processes and the memory measured.
func (r *actorScaleReport) log(t *testing.T) {
	t.Helper()
	n, live, sum := r.n, r.live, r.sum
	memBefore, memPeak := r.self0.mem, r.self1.mem
	mib := func(x uint64, k int) string { return fmt.Sprintf("%.1f MiB", float64(x)/float64(k)/(1<<20)) }
	t.Logf("%d actors: created and first call answered in %v (%.0f actors/s; Remote of all took %v)",
		n, r.created.Round(time.Millisecond), float64(n)/r.created.Seconds(), r.submitted.Round(time.Millisecond))
	t.Logf("worker processes: before %d, peak %d, after release %d (released in %v, back to %d within %v)",
		countLive(r.before), live, countLive(r.after), r.released.Round(time.Microsecond), countLive(r.after), r.settled.Round(time.Millisecond))
	t.Logf("memory of the %d worker processes alive at the peak (%d actors, the pool), per process: VmRSS %s (RssAnon %s, RssFile %s, RssShmem %s); total VmRSS %.2f GiB",
		live, n, mib(sum.rss, live), mib(sum.anon, live), mib(sum.file, live), mib(sum.shmem, live), float64(sum.rss)/(1<<30))
	if memBefore > 0 && memPeak > 0 {
		t.Logf("MemAvailable fell by %.2f GiB: %s per actor", float64(int64(memBefore)-int64(memPeak))/(1<<30),
			mib(uint64(max(int64(memBefore)-int64(memPeak), 0)), n))
	}
	b, p := r.self0, r.self1
	t.Logf("this process (driver and raylet): open files %d before, %d at the peak (%.1f per actor); threads %d, %d; VmRSS %s, %s (%.1f KiB per actor)",
		b.fds, p.fds, float64(p.fds-b.fds)/float64(n), b.threads, p.threads,
		mib(b.self.rss, 1), mib(p.self.rss, 1), float64(int64(p.self.rss)-int64(b.self.rss))/float64(n)/1024)
}

// proc is one child process of this one.
type proc struct {
	pid   int
	state byte // from /proc/PID/stat: R, S, Z...
}

// childProcs lists this process's children (rayo's workers) from /proc.
func childProcs() []proc {
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == me {
			out = append(out, proc{pid: pid, state: f[0][0]})
		}
	}
	return out
}

// countLive counts the processes that have not exited (zombies aside).
func countLive(ps []proc) int {
	n := 0
	for _, p := range ps {
		if p.state != 'Z' {
			n++
		}
	}
	return n
}

func pidsOf(ps []proc) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.pid
	}
	return out
}

// waitChildren polls the children until ok holds of how many are alive,
// or fails the test after d.
func waitChildren(t *testing.T, ok func(int) bool, d time.Duration) []proc {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ps := childProcs()
		if ok(countLive(ps)) {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker processes: still %d after %v: %v", countLive(ps), d, pidsOf(ps))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procMem is memory from /proc/PID/status, in bytes.
type procMem struct{ rss, anon, file, shmem uint64 }

func (m *procMem) add(x procMem) {
	m.rss += x.rss
	m.anon += x.anon
	m.file += x.file
	m.shmem += x.shmem
}

func readProcMem(pid int) procMem {
	var m procMem
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		case "RssFile":
			dst = &m.file
		case "RssShmem":
			dst = &m.shmem
		default:
			continue
		}
		if kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
			*dst = kb << 10
		}
	}
	return m
}

// memAvailable is MemAvailable from /proc/meminfo, in bytes (0 if unknown).
func memAvailable() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// threads is this process's number of threads.
func threads() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			k, _ := strconv.Atoi(strings.TrimSpace(v))
			return k
		}
	}
	return -1
}

// openFDs counts this process's open file descriptors.
func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}
