package objstore

import (
	"math"
	"os"
	"path/filepath"
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

func TestCPUStallShare(t *testing.T) {
	clock := time.Unix(1000, 0)
	var total uint64
	g := cpuStall{read: func() (uint64, bool) { return total, true }, now: func() time.Time { return clock }}
	if _, measured, there := g.spareTime(); measured || !there {
		t.Fatalf("spareTime after one read: measured %v, there %v; want false, true", measured, there)
	}
	clock = clock.Add(100 * time.Millisecond)
	total += 50_000 // tasks waited half the time
	if spare, measured, _ := g.spareTime(); spare || !measured {
		t.Fatalf("spareTime = %v, %v with waits half the time, want false, true", spare, measured)
	}
	clock = clock.Add(100 * time.Millisecond)
	total += 10_000 // a tenth
	if spare, _, _ := g.spareTime(); !spare {
		t.Fatal("no time to spare with waits a tenth of the time")
	}
}

func TestCPUStallWithoutPressureFiles(t *testing.T) {
	g := cpuStall{read: func() (uint64, bool) { return 0, false }}
	if _, _, there := g.spareTime(); there {
		t.Fatal("spareTime says pressure stall information is there when it cannot be read")
	}
}

func TestParsePressure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pressure")
	text := "some avg10=4.55 avg60=19.14 avg300=34.66 total=30552090305\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if us, ok := parsePressure(path); !ok || us != 30552090305 {
		t.Fatalf("parsePressure = %d, %v", us, ok)
	}
	if err := os.WriteFile(path, []byte("full total=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := parsePressure(path); ok {
		t.Fatal("parsePressure took a file without its some line")
	}
}
