package objstore

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// idleSample is the shortest time over which a cpuRate measures
// (/proc/stat counts in hundredths of a second, so that 50 ms tell idle
// CPUs to a fifth).
const idleSample = 50 * time.Millisecond

// cpuRate measures how fast a counter of CPU time grows, in CPUs: here,
// the machine's idle time (/proc/stat), below which the mapper of the
// prefault window does not map where the kernel keeps no CPU pressure
// (see writeState.spareCPU). Its own time mapping is kept apart, since it
// is what the mapper took of the CPU it found spare, and would otherwise
// stop it every other measure. It is the mapper's own.
type cpuRate struct {
	read       func() (time.Duration, bool) // the counter
	now        func() time.Time             // the clock; nil: time.Now
	at         time.Time                    // when it was last read
	last       time.Duration                // what it said then
	own, ownAt time.Duration                // the mapper's time mapping (see mapped), and what it was then
	cpus, mine float64                      // the counter's and the mapper's CPUs between the last two reads
	measured   bool                         // cpus and mine hold a measure
	unreadable bool                         // the counter cannot be read
}

// mapped adds d to the time the mapper spent mapping.
func (g *cpuRate) mapped(d time.Duration) { g.own += d }

// rate returns how many CPUs' worth the counter grew by between its last
// two reads, and how many the mapper spent mapping meanwhile, reading it
// again if idleSample has passed, and whether that is a measure (it is not
// before two reads, nor if the counter cannot be read: see unreadable).
func (g *cpuRate) rate() (cpus, mine float64, measured bool) {
	if g.unreadable {
		return 0, 0, false
	}
	now := nowBy(g.now)
	if g.measured && now.Sub(g.at) < idleSample {
		return g.cpus, g.mine, true
	}
	v, ok := g.read()
	if !ok {
		g.unreadable = true
		return 0, 0, false
	}
	if !g.at.IsZero() && now.After(g.at) && v >= g.last {
		span := now.Sub(g.at).Seconds()
		g.cpus = (v - g.last).Seconds() / span
		g.mine = (g.own - g.ownAt).Seconds() / span
		g.measured = true
	}
	g.at, g.last, g.ownAt = now, v, g.own
	return g.cpus, g.mine, g.measured
}

// idleCPUs returns how many CPUs the machine left idle lately, counting
// the mapper's own mapping as idle, from a cpuRate of readIdleTime; a
// machine without the counter counts as idle.
func (g *cpuRate) idleCPUs() (float64, bool) {
	idle, mine, measured := g.rate()
	if g.unreadable {
		return 1, true
	}
	return idle + mine, measured
}

// readIdleTime reads the time the machine's CPUs have been idle, from
// /proc/stat.
func readIdleTime() (time.Duration, bool) {
	idle, _, ok := readProcStat()
	return time.Duration(idle) * 10 * time.Millisecond, ok
}

// nowBy is the time by clock, or time.Now if clock is nil.
func nowBy(clock func() time.Time) time.Time {
	if clock == nil {
		return time.Now()
	}
	return clock()
}

// readProcStat reads the machine's idle and total CPU time, in
// hundredths of a second, from the first line of /proc/stat (idle and
// iowait count as idle).
func readProcStat() (idle, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	// user nice system idle iowait irq softirq steal, then guest and
	// guest_nice, which user and nice include already.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, true
}

// stallSample is the shortest time over which cpuStall measures the
// waits for a CPU (counted in microseconds; over 10 ms, the share varied
// enough to let the mapper map beside busy actors now and then).
const stallSample = 50 * time.Millisecond

// maxStall is the share of the time over the last stallSample during which
// some task waited for a CPU (pressure stall information) that still
// lets the mapper map in quiet time: above it, the CPUs this process may
// use have no time to spare, be they the machine's or its cgroup's. On
// the 2-CPU machine this was tuned on, a driver filling the data of its
// first put while the mapper mapped stalled 0 to 23% of the time, and
// the microbenchmark's task metrics 40 to 99%.
const maxStall = 0.25

// cpuStall tells whether tasks waited for a CPU lately, from the CPU
// pressure of this process's cgroup or, failing that, of the machine
// (Linux's pressure stall information, counted in microseconds): unlike
// /proc/stat, it sees the CPUs a cgroup's quota or the process's affinity
// leave it. The mapper's own waits count too: a mapper that takes a CPU
// another task wants makes one of them wait, and stops. It is the
// mapper's own.
type cpuStall struct {
	read     func() (micros uint64, ok bool) // the total stall time
	now      func() time.Time                // the clock; nil: time.Now
	at       time.Time                       // when it was last read
	total    uint64                          // what it said then
	spare    bool                            // the share between the last two reads was at most maxStall
	measured bool                            // spare holds a measure
	missing  bool                            // no pressure file: use idleCPU instead
}

// spareTime reports whether tasks waited for a CPU at most maxStall of the
// time between the last two reads (reading again if stallSample has
// passed), whether that is a measure yet, and whether pressure stall
// information is there at all.
func (g *cpuStall) spareTime() (spare, measured, there bool) {
	if g.missing {
		return false, false, false
	}
	now := nowBy(g.now)
	if g.measured && now.Sub(g.at) < stallSample {
		return g.spare, true, true
	}
	total, ok := g.read()
	if !ok {
		g.missing = true
		return false, false, false
	}
	if !g.at.IsZero() && now.After(g.at) {
		waited := time.Duration(total-g.total) * time.Microsecond
		g.spare = waited.Seconds() <= maxStall*now.Sub(g.at).Seconds()
		g.measured = true
	}
	g.at, g.total = now, total
	return g.spare, g.measured, true
}

// readCPUPressure reads the total time some task waited for a CPU, in
// microseconds, from this process's cgroup (cgroup v2) or the machine.
func readCPUPressure() (uint64, bool) {
	for _, path := range []string{"/sys/fs/cgroup/cpu.pressure", "/proc/pressure/cpu"} {
		if us, ok := parsePressure(path); ok {
			return us, true
		}
	}
	return 0, false
}

// parsePressure reads the "some" line's total of a pressure file.
func parsePressure(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if !bytes.HasPrefix(line, []byte("some ")) {
		return 0, false
	}
	for _, f := range bytes.Fields(line) {
		if v, ok := bytes.CutPrefix(f, []byte("total=")); ok {
			n, err := strconv.ParseUint(string(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
