package raylet

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The memory monitor, after Ray's: the raylet samples the node's memory
// (cgroup-aware) several times a second and, past a threshold, kills one
// worker, the one running the newest retriable task of the owner with the
// most running tasks, so that the kernel's OOM killer never has to choose
// (it might choose the raylet or a driver). The lease's owner is told
// before the kill, so it retries the task with backoff and, past its
// retries, fails it with ErrOutOfMemory.

// MemoryResource is the schedulable resource of a node's memory, in bytes
// (Ray's "memory"): a node offers its memory total unless told otherwise.
const MemoryResource = "memory"

// Settings of the memory monitor.
const (
	// DefaultMemoryUsageThreshold is the fraction of the node's memory
	// past which the monitor kills a worker.
	DefaultMemoryUsageThreshold = 0.95
	// DefaultMemoryMonitorInterval is how often the monitor samples.
	DefaultMemoryMonitorInterval = 250 * time.Millisecond
	// EnvMemoryUsageThreshold overrides the default threshold.
	EnvMemoryUsageThreshold = "RAYO_MEMORY_USAGE_THRESHOLD"
	// EnvTestMemoryTotal, for tests, fakes the node's memory: its total is
	// this many bytes (see hostres.ParseBytes) and its use is the resident
	// memory of the raylet's workers alone, so that a test can make the
	// monitor act deterministically with little real memory.
	EnvTestMemoryTotal = "RAYO_TEST_MEMORY_TOTAL"
)

// ownerNoticeTimeout bounds how long the monitor waits for an owner to
// take the news of a kill before it kills anyway.
const ownerNoticeTimeout = time.Second

// releaseTimeout bounds how long the monitor waits for a killed worker to
// exit (and so release its memory) before it may kill again.
const releaseTimeout = 10 * time.Second

// memReading is one sample of the node's memory.
type memReading struct {
	used, total int64
	source      string
}

// memMonitor is the raylet's memory monitor.
type memMonitor struct {
	threshold float64
	interval  time.Duration // <= 0: off
	read      func() (memReading, error)
	fakeTotal int64 // EnvTestMemoryTotal, when set

	mu         sync.Mutex             // protects localOwner
	localOwner func(*pb.WorkerKilled) // the owner in the raylet's process, if any
}

// newMemMonitor checks the monitor's settings: threshold 0 means the
// environment's (EnvMemoryUsageThreshold) or the default.
func (r *Raylet) newMemMonitor(threshold float64, interval time.Duration) (*memMonitor, error) {
	if threshold == 0 {
		threshold = DefaultMemoryUsageThreshold
		if s := os.Getenv(EnvMemoryUsageThreshold); s != "" {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("raylet: %s=%q: want a fraction such as 0.95: %w", EnvMemoryUsageThreshold, s, err)
			}
			threshold = v
		}
	}
	if math.IsNaN(threshold) || threshold <= 0 || threshold > 1 {
		return nil, fmt.Errorf("raylet: memory usage threshold %g: want a fraction above 0, at most 1", threshold)
	}
	if interval == 0 {
		interval = DefaultMemoryMonitorInterval
	}
	m := &memMonitor{threshold: threshold, interval: interval, read: readNodeMemory}
	if s := os.Getenv(EnvTestMemoryTotal); s != "" {
		total, err := hostres.ParseBytes(s)
		if err != nil {
			return nil, fmt.Errorf("raylet: %s: %w", EnvTestMemoryTotal, err)
		}
		m.fakeTotal = total
		m.read = func() (memReading, error) {
			var used int64
			for _, pid := range r.WorkerPIDs() {
				used += rss(pid)
			}
			return memReading{used: used, total: total, source: EnvTestMemoryTotal + " (workers' memory only)"}, nil
		}
	}
	return m, nil
}

func readNodeMemory() (memReading, error) {
	m, err := hostres.ReadMemory()
	if err != nil {
		return memReading{}, err
	}
	return memReading{used: m.Used, total: m.Total, source: m.Source}, nil
}

// rss is a process's resident memory in bytes, 0 if it cannot be read.
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// SetLocalOwner gives the raylet the owner living in its own process (an
// embedded cluster's driver), which it tells of the workers of its leases
// that the memory monitor kills (what it pushes to other owners as
// rpc.WorkerOOM) by calling oom.
func (r *Raylet) SetLocalOwner(oom func(*pb.WorkerKilled)) {
	r.mem.mu.Lock()
	r.mem.localOwner = oom
	r.mem.mu.Unlock()
}

// MemoryUsageThreshold is the fraction of the node's memory past which
// the memory monitor kills a worker.
func (r *Raylet) MemoryUsageThreshold() float64 { return r.mem.threshold }

// memoryMonitor samples the node's memory until the raylet closes.
func (r *Raylet) memoryMonitor() {
	defer r.procs.Done()
	if r.mem.interval <= 0 {
		return
	}
	r.log.Info("memory monitor", "threshold", r.mem.threshold, "interval", r.mem.interval)
	t := time.NewTicker(r.mem.interval)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		m, err := r.mem.read()
		if err != nil {
			if !warned {
				r.log.Warn("memory monitor cannot read the node's memory", "err", err)
				warned = true
			}
			continue
		}
		if m.total <= 0 || float64(m.used) < r.mem.threshold*float64(m.total) {
			continue
		}
		exited := r.killForMemory(m)
		if exited == nil {
			continue
		}
		// Wait for the worker's memory to be released before looking again.
		wait := time.NewTimer(releaseTimeout)
		select {
		case <-exited:
		case <-wait.C:
		case <-r.stop:
		}
		wait.Stop()
	}
}

// candidate is a leased worker the monitor may kill.
type candidate struct {
	lease     uint64
	pid       int
	rss       int64
	granted   time.Time
	owner     string // the lease's owner (its address)
	retriable bool   // its owner retries its tasks
	actor     bool   // it hosts an actor
	task      string
}

// pickVictim chooses whom to kill, after Ray's group-by-owner policy:
// workers of plain tasks before those of actors; among them, retriable
// tasks grouped by owner (a non-retriable task is a group of its own);
// retriable groups first, then the group with the most running tasks,
// then the one with the newest task; within the group, the newest task.
// It returns -1 if there is none.
func pickVictim(cands []candidate) int {
	type group struct {
		members   []int
		retriable bool
		newest    time.Time
	}
	build := func(actors bool) []*group {
		byOwner := map[string]*group{}
		var groups []*group
		for i, c := range cands {
			if c.actor != actors {
				continue
			}
			var g *group
			if c.retriable {
				g = byOwner[c.owner]
			}
			if g == nil {
				g = &group{retriable: c.retriable}
				groups = append(groups, g)
				if c.retriable {
					byOwner[c.owner] = g
				}
			}
			g.members = append(g.members, i)
			if c.granted.After(g.newest) {
				g.newest = c.granted
			}
		}
		return groups
	}
	groups := build(false)
	if len(groups) == 0 {
		groups = build(true)
	}
	if len(groups) == 0 {
		return -1
	}
	sort.SliceStable(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		if a.retriable != b.retriable {
			return a.retriable
		}
		if len(a.members) != len(b.members) {
			return len(a.members) > len(b.members)
		}
		return a.newest.After(b.newest)
	})
	best := -1
	for _, i := range groups[0].members {
		if best < 0 || cands[i].granted.After(cands[best].granted) {
			best = i
		}
	}
	return best
}

// killForMemory kills one worker, if any may be, after telling its
// lease's owner why, and returns a channel closed when it has exited.
func (r *Raylet) killForMemory(m memReading) <-chan struct{} {
	r.mu.Lock()
	var cands, all []candidate
	var leases []*leaseRec
	for _, w := range r.workers {
		if w.dead {
			continue
		}
		c := candidate{pid: w.pid, task: "idle"}
		if l := w.lease; l != nil {
			c.task = l.taskName
			if l.dedicated {
				c.task = "actor"
			}
		}
		all = append(all, c)
	}
	for _, l := range r.leases {
		if l.w == nil || l.w.dead || l.w.proc == nil {
			continue
		}
		cands = append(cands, candidate{lease: l.id, pid: l.w.pid, granted: l.granted, owner: l.ownerAddr,
			retriable: l.retriable, actor: l.dedicated, task: l.taskName})
		leases = append(leases, l)
	}
	r.mu.Unlock()
	if len(cands) == 0 {
		return nil
	}
	for i := range cands {
		cands[i].rss = rss(cands[i].pid)
	}
	for i := range all {
		all[i].rss = rss(all[i].pid)
	}
	i := pickVictim(cands)
	if i < 0 {
		return nil
	}
	v, l := cands[i], leases[i]
	msg := r.oomMessage(m, v, all)
	r.log.Warn("memory monitor kills a worker", "pid", v.pid, "task", v.task, "used", m.used, "total", m.total, "threshold", r.mem.threshold)
	notice := &pb.WorkerKilled{LeaseId: l.id, WorkerId: l.w.id[:], WorkerAddr: l.w.addr, Message: msg}
	if l.owner == nil {
		r.mem.mu.Lock()
		h := r.mem.localOwner
		r.mem.mu.Unlock()
		if h != nil {
			h(notice)
		}
	} else {
		ctx, cancel := context.WithTimeout(r.ctx, ownerNoticeTimeout)
		_, _ = rpc.Call(ctx, l.owner, rpc.WorkerOOM, notice)
		cancel()
	}
	_ = l.w.proc.Kill()
	return l.w.exited
}

// oomMessage says why a worker was killed: the node's memory, and the
// largest workers.
func (r *Raylet) oomMessage(m memReading, v candidate, cands []candidate) string {
	const mib = 1 << 20
	var b strings.Builder
	fmt.Fprintf(&b, "the node's memory monitor killed the worker (pid %d, %d MiB resident) running task %s: the node used %d MiB of %d MiB (%s), past the threshold of %g (%d MiB)",
		v.pid, v.rss/mib, orIdle(v.task), m.used/mib, m.total/mib, m.source, r.mem.threshold, int64(r.mem.threshold*float64(m.total))/mib)
	sorted := append([]candidate(nil), cands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].rss > sorted[j].rss })
	if len(sorted) > 5 {
		sorted = sorted[:5]
	}
	b.WriteString("; largest workers:")
	for i, c := range sorted {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " pid %d %d MiB (%s)", c.pid, c.rss/mib, orIdle(c.task))
	}
	return b.String()
}

func orIdle(task string) string {
	if task == "" {
		return "unnamed"
	}
	return task
}

// StoreSizing is the object store's capacity and where the figure comes
// from (a flag or option, the cgroup's memory limit, the RAM, /dev/shm).
func (r *Raylet) StoreSizing() (int64, string) { return r.cfg.StoreCapacity, r.cfg.StoreSource }
