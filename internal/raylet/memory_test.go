package raylet

import (
	"strings"
	"testing"
	"time"
)

func TestPickVictim(t *testing.T) {
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	cases := []struct {
		name  string
		cands []candidate
		want  int
	}{
		{"none", nil, -1},
		{"the newest of one owner's tasks", []candidate{
			{owner: "a", retriable: true, granted: at(1)},
			{owner: "a", retriable: true, granted: at(3)},
			{owner: "a", retriable: true, granted: at(2)},
		}, 1},
		{"retriable before non-retriable, even older", []candidate{
			{owner: "a", retriable: false, granted: at(9)},
			{owner: "b", retriable: true, granted: at(1)},
		}, 1},
		{"the owner with the most running tasks", []candidate{
			{owner: "a", retriable: true, granted: at(1)},
			{owner: "a", retriable: true, granted: at(2)},
			{owner: "b", retriable: true, granted: at(9)},
		}, 1},
		{"equal groups: the one with the newest task", []candidate{
			{owner: "a", retriable: true, granted: at(1)},
			{owner: "b", retriable: true, granted: at(5)},
			{owner: "a", retriable: true, granted: at(4)},
			{owner: "b", retriable: true, granted: at(2)},
		}, 1},
		{"non-retriable tasks are groups of one: the newest", []candidate{
			{owner: "a", granted: at(1)},
			{owner: "a", granted: at(3)},
			{owner: "a", granted: at(2)},
		}, 1},
		{"actors only when nothing else", []candidate{
			{owner: "a", retriable: true, actor: true, granted: at(9)},
			{owner: "b", retriable: false, granted: at(1)},
		}, 1},
		{"actors alone: the newest", []candidate{
			{owner: "a", actor: true, granted: at(1)},
			{owner: "a", actor: true, granted: at(2)},
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickVictim(tc.cands); got != tc.want {
				t.Fatalf("pickVictim = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestMemMonitorSettings(t *testing.T) {
	r := &Raylet{}
	t.Setenv(EnvMemoryUsageThreshold, "")
	t.Setenv(EnvTestMemoryTotal, "")
	m, err := r.newMemMonitor(0, 0)
	if err != nil || m.threshold != DefaultMemoryUsageThreshold || m.interval != DefaultMemoryMonitorInterval {
		t.Fatalf("defaults: %+v %v", m, err)
	}
	t.Setenv(EnvMemoryUsageThreshold, "0.5")
	if m, err := r.newMemMonitor(0, 0); err != nil || m.threshold != 0.5 {
		t.Fatalf("from the environment: %+v %v", m, err)
	}
	if m, err := r.newMemMonitor(0.7, 0); err != nil || m.threshold != 0.7 {
		t.Fatalf("configured over the environment: %+v %v", m, err)
	}
	for _, bad := range []float64{-0.1, 1.5} {
		if _, err := r.newMemMonitor(bad, 0); err == nil || !strings.Contains(err.Error(), "threshold") {
			t.Errorf("threshold %g: %v", bad, err)
		}
	}
	t.Setenv(EnvMemoryUsageThreshold, "most")
	if _, err := r.newMemMonitor(0, 0); err == nil || !strings.Contains(err.Error(), EnvMemoryUsageThreshold) {
		t.Errorf("bad environment: %v", err)
	}
	t.Setenv(EnvMemoryUsageThreshold, "")
	t.Setenv(EnvTestMemoryTotal, "lots")
	if _, err := r.newMemMonitor(0, 0); err == nil || !strings.Contains(err.Error(), EnvTestMemoryTotal) {
		t.Errorf("bad fake total: %v", err)
	}
	t.Setenv(EnvTestMemoryTotal, "1GiB")
	m, err = r.newMemMonitor(0, 0)
	if err != nil || m.fakeTotal != 1<<30 {
		t.Fatalf("fake total: %+v %v", m, err)
	}
	if got, err := m.read(); err != nil || got.total != 1<<30 || got.used != 0 {
		t.Fatalf("fake reading with no workers: %+v %v", got, err)
	}
}

func TestOOMMessage(t *testing.T) {
	r := &Raylet{mem: &memMonitor{threshold: 0.9}}
	v := candidate{pid: 7, rss: 300 << 20, task: "hog"}
	msg := r.oomMessage(memReading{used: 950 << 20, total: 1 << 30, source: "test"}, v,
		[]candidate{{pid: 8, rss: 10 << 20, task: "small"}, v})
	for _, want := range []string{"pid 7", "300 MiB", "hog", "950 MiB of 1024 MiB", "threshold of 0.9", "largest workers: pid 7 300 MiB (hog), pid 8 10 MiB (small)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
}
