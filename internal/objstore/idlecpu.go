package objstore

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// idleSample is the shortest time over which idleCPU measures the
// machine's idle time (/proc/stat counts in hundredths of a second, so
// that 50 ms tell idle CPUs to a fifth).
const idleSample = 50 * time.Millisecond

// idleCPU tells how many CPUs the machine left idle lately, from
// /proc/stat: the mapper of the prefault window maps only while some are
// (see writeState.run), as a thread of the idle scheduling class would.
// It is the mapper's own.
type idleCPU struct {
	read       func() (idle, total uint64, ok bool) // the machine's counters
	now        func() time.Time                     // the clock; nil: time.Now
	at         time.Time                            // when they were last read
	idle, all  uint64                               // what they said then
	own, ownAt time.Duration                        // the mapper's time mapping (see mapped), and what it was then
	cpus       float64                              // idle CPUs between the last two reads
	measured   bool                                 // cpus holds a measure
	unreadable bool                                 // /proc/stat cannot be read: the machine counts as idle
}

// mapped adds d to the time the mapper spent mapping, which counts as
// idle: it is what the mapper took of the CPUs it found idle.
func (g *idleCPU) mapped(d time.Duration) { g.own += d }

// idleCPUs returns the CPUs left idle between the last two reads of the
// counters, the mapper's own mapping included, reading them again if
// idleSample has passed, and whether that is a measure yet (it is not
// before two reads).
func (g *idleCPU) idleCPUs() (float64, bool) {
	if g.unreadable {
		return 1, true
	}
	now := nowBy(g.now)
	if g.measured && now.Sub(g.at) < idleSample {
		return g.cpus, true
	}
	idle, all, ok := g.read()
	if !ok {
		g.unreadable = true
		return 1, true
	}
	if !g.at.IsZero() && all > g.all {
		// The counters are CPU time: idle time over the time elapsed is
		// the number of CPUs left idle.
		span := now.Sub(g.at).Seconds()
		g.cpus = float64(idle-g.idle)/100/span + (g.own-g.ownAt).Seconds()/span
		g.measured = true
	}
	g.at, g.idle, g.all, g.ownAt = now, idle, all, g.own
	return g.cpus, g.measured
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
