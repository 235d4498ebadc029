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
	n := 100
	if s := os.Getenv("RAYO_SCALE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("RAYO_SCALE=%q: want a positive number of actors", s)
		}
		n = v
	}
	const pool = 2
	restart(t, NumCPUs(pool))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+time.Duration(n)*100*time.Millisecond)
	defer cancel()

	// The fresh cluster starts its pool; wait for it.
	before := waitChildren(t, func(k int) bool { return k >= pool }, 10*time.Second)
	memBefore := memAvailable()
	fdsBefore := openFDs()
	selfBefore, threadsBefore := readProcMem(os.Getpid()), threads()

	start := time.Now()
	actors := make([]Actor[*Counter], n)
	for i := range actors {
		actors[i] = newCounter.Remote()
		if err := actors[i].Err(); err != nil {
			t.Fatalf("creating actor %d: %v", i, err)
		}
	}
	submitted := time.Since(start)
	refs := make([]Ref[int], n)
	for i, a := range actors {
		refs[i] = incr.Remote(a)
	}
	vs, err := GetAll(ctx, refs)
	if err != nil {
		t.Fatalf("first calls on %d actors: %v", n, err)
	}
	for i, v := range vs {
		if v != 1 {
			t.Fatalf("actor %d: first Incr gave %d, want 1", i, v)
		}
	}
	created := time.Since(start)

	// Every actor is alive now (its handle is held): measure.
	peak := childProcs()
	memPeak := memAvailable()
	fdsPeak := openFDs()
	selfPeak, threadsPeak := readProcMem(os.Getpid()), threads()
	var sum procMem
	for _, p := range peak {
		if p.state != 'Z' {
			sum.add(readProcMem(p.pid))
		}
	}
	live := countLive(peak)

	releaseStart := time.Now()
	for _, a := range actors {
		a.Release()
	}
	released := time.Since(releaseStart)
	actors, refs = nil, nil
	runtime.GC()
	// Actors stop once their handles are gone; workers the burst started
	// beyond the pool are stopped after an idle timeout.
	after := waitChildren(t, func(k int) bool { return k <= pool }, 30*time.Second+time.Duration(n)*20*time.Millisecond)
	settled := time.Since(releaseStart)

	mib := func(x uint64, k int) string { return fmt.Sprintf("%.1f MiB", float64(x)/float64(k)/(1<<20)) }
	t.Logf("%d actors: created and first call answered in %v (%.0f actors/s; Remote of all took %v)",
		n, created.Round(time.Millisecond), float64(n)/created.Seconds(), submitted.Round(time.Millisecond))
	t.Logf("worker processes: before %d, peak %d, after release %d (released in %v, back to %d within %v)",
		countLive(before), live, countLive(after), released.Round(time.Microsecond), countLive(after), settled.Round(time.Millisecond))
	t.Logf("memory of the %d worker processes alive at the peak (%d actors, the pool), per process: VmRSS %s (RssAnon %s, RssFile %s, RssShmem %s); total VmRSS %.2f GiB",
		live, n, mib(sum.rss, live), mib(sum.anon, live), mib(sum.file, live), mib(sum.shmem, live), float64(sum.rss)/(1<<30))
	if memBefore > 0 && memPeak > 0 {
		t.Logf("MemAvailable fell by %.2f GiB: %s per actor", float64(int64(memBefore)-int64(memPeak))/(1<<30),
			mib(uint64(max(int64(memBefore)-int64(memPeak), 0)), n))
	}
	t.Logf("this process (driver and raylet): open files %d before, %d at the peak (%.1f per actor); threads %d, %d; VmRSS %s, %s (%.1f KiB per actor)",
		fdsBefore, fdsPeak, float64(fdsPeak-fdsBefore)/float64(n), threadsBefore, threadsPeak,
		mib(selfBefore.rss, 1), mib(selfPeak.rss, 1), float64(int64(selfPeak.rss)-int64(selfBefore.rss))/float64(n)/1024)

	if live < n {
		t.Errorf("only %d worker processes at the peak for %d actors: each actor should have its own", live, n)
	}
	if k := countLive(after); k > pool {
		t.Errorf("%d worker processes %v after releasing every actor, want the pool's %d", k, pidsOf(after), pool)
	}
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
