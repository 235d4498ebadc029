package objstore

import (
	"math"
	"testing"
	"time"
)

// fakeStat is /proc/stat's idle and total counters, in hundredths of a
// second, and a clock, both moved by the test.
type fakeStat struct {
	idle, total uint64
	clock       time.Time
	reads       int
}

func (f *fakeStat) gauge() idleCPU {
	return idleCPU{
		read: func() (uint64, uint64, bool) {
			f.reads++
			return f.idle, f.total, true
		},
		now: func() time.Time { return f.clock },
	}
}

// advance lets d pass on a machine of cpus CPUs of which idle were idle.
func (f *fakeStat) advance(d time.Duration, cpus, idle float64) {
	f.clock = f.clock.Add(d)
	f.total += uint64(math.Round(d.Seconds() * 100 * cpus))
	f.idle += uint64(math.Round(d.Seconds() * 100 * idle))
}

func TestIdleCPUsFromTheCounters(t *testing.T) {
	f := &fakeStat{clock: time.Unix(1000, 0), idle: 5000, total: 90000}
	g := f.gauge()
	if _, ok := g.idleCPUs(); ok {
		t.Fatal("a measure after one read of the counters")
	}
	f.advance(100*time.Millisecond, 2, 1.5)
	if cpus, ok := g.idleCPUs(); !ok || math.Abs(cpus-1.5) > 0.01 {
		t.Fatalf("idleCPUs = %.2f, %v after 1.5 of 2 CPUs idle for 100 ms, want 1.50, true", cpus, ok)
	}
	// Within idleSample the last measure stands, without a read.
	reads := f.reads
	f.advance(idleSample/2, 2, 0)
	if cpus, _ := g.idleCPUs(); math.Abs(cpus-1.5) > 0.01 || f.reads != reads {
		t.Fatalf("idleCPUs = %.2f after %d more reads within idleSample, want 1.50 and none", cpus, f.reads-reads)
	}
	f.advance(idleSample, 2, 0)
	if cpus, _ := g.idleCPUs(); cpus > 0.01 {
		t.Fatalf("idleCPUs = %.2f with both CPUs busy, want 0", cpus)
	}
}

// The mapper's own mapping counts as idle time: it is what it took of the
// CPU it found idle, and would otherwise stop it every other measure.
func TestIdleCPUsCountTheMappersOwnTime(t *testing.T) {
	f := &fakeStat{clock: time.Unix(1000, 0)}
	g := f.gauge()
	g.idleCPUs()
	f.advance(100*time.Millisecond, 2, 0.1)
	g.mapped(90 * time.Millisecond)
	if cpus, _ := g.idleCPUs(); math.Abs(cpus-1.0) > 0.01 {
		t.Fatalf("idleCPUs = %.2f with 0.1 CPU idle and the mapper busy 90%% of the time, want 1.00", cpus)
	}
}

func TestIdleCPUsWithoutTheCounters(t *testing.T) {
	g := idleCPU{read: func() (uint64, uint64, bool) { return 0, 0, false }}
	if cpus, ok := g.idleCPUs(); !ok || cpus < minIdleCPUs {
		t.Fatalf("idleCPUs = %.2f, %v without /proc/stat, want the machine counted as idle", cpus, ok)
	}
}

func TestReadProcStat(t *testing.T) {
	idle, total, ok := readProcStat()
	if !ok || total == 0 || idle > total {
		t.Fatalf("readProcStat = %d, %d, %v", idle, total, ok)
	}
}
