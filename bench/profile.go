package bench

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rayo-dev/rayo"
)

// envProfileDir tells worker processes where to write their CPU profiles.
const envProfileDir = "RAYO_BENCH_PROFILE_DIR"

// Files in the profile folder by which the driver and the workers agree.
const (
	currentFile = ".current"      // the metric being profiled
	readyPrefix = ".ready-"       // + pid: this worker handles the signals
	donePrefix  = ".done-"        // + pid: this worker has written its profile
	startSignal = syscall.SIGUSR1 // start profiling
	stopSignal  = syscall.SIGUSR2 // stop and write the profile
)

// ServeWorkerProfiling lets a worker process take part in the suite's CPU
// profiles (Config.ProfileDir): when this process is a rayo worker started
// by a profiling run, it installs handlers by which the driver starts and
// stops a CPU profile around each metric. Elsewhere it does nothing. Call
// it just before rayo.ServeWorker.
func ServeWorkerProfiling() {
	dir := os.Getenv(envProfileDir)
	if dir == "" || !rayo.IsWorker() {
		return
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, startSignal, stopSignal)
	pid := os.Getpid()
	go func() {
		var f *os.File
		for s := range sig {
			switch {
			case s == startSignal && f == nil:
				name, err := os.ReadFile(filepath.Join(dir, currentFile))
				if err != nil {
					continue
				}
				_ = os.Remove(filepath.Join(dir, fmt.Sprintf("%s%d", donePrefix, pid)))
				f, err = os.Create(filepath.Join(dir, fmt.Sprintf("%s.worker-%d.pprof", strings.TrimSpace(string(name)), pid)))
				if err != nil {
					continue
				}
				if pprof.StartCPUProfile(f) != nil {
					_ = f.Close()
					f = nil
				}
			case s == stopSignal && f != nil:
				pprof.StopCPUProfile()
				_ = f.Close()
				f = nil
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s%d", donePrefix, pid)), nil, 0o644)
			}
		}
	}()
	_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s%d", readyPrefix, pid)), nil, 0o644)
}

// profiler takes the CPU profiles of the measured phases.
type profiler struct {
	dir     string
	name    string // the metric being profiled
	f       *os.File
	workers []int // signalled to start
}

func newProfiler(dir string) (*profiler, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &profiler{dir: dir}, nil
}

// exportToWorkers makes the workers started from now on profile too.
func (p *profiler) exportToWorkers() error {
	return os.Setenv(envProfileDir, p.dir)
}

func (p *profiler) start(name string) error {
	name = strings.ReplaceAll(name, "/", "_") // placement_group_create/removal
	f, err := os.Create(filepath.Join(p.dir, name+".pprof"))
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return err
	}
	p.f, p.name = f, name
	if err := os.WriteFile(filepath.Join(p.dir, currentFile), []byte(name), 0o644); err != nil {
		return err
	}
	p.workers = p.workers[:0]
	for _, pid := range p.readyWorkers() {
		if syscall.Kill(pid, startSignal) == nil {
			p.workers = append(p.workers, pid)
		}
	}
	return nil
}

func (p *profiler) stop() {
	pprof.StopCPUProfile()
	_ = p.f.Close()
	for _, pid := range p.workers {
		_ = syscall.Kill(pid, stopSignal)
	}
	// Give the workers a moment to write their profiles. A worker that
	// exited meanwhile (an actor stopped, an idle worker reaped) leaves an
	// empty or cut-off profile: it is removed.
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range p.workers {
		done := filepath.Join(p.dir, fmt.Sprintf("%s%d", donePrefix, pid))
		for {
			if _, err := os.Stat(done); err == nil {
				break
			}
			if parentOf(pid) != os.Getpid() || !time.Now().Before(deadline) {
				if _, err := os.Stat(done); err == nil {
					break // it finished just before exiting
				}
				_ = os.Remove(filepath.Join(p.dir, fmt.Sprintf("%s.worker-%d.pprof", p.name, pid)))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// close removes the files by which the driver and the workers agreed.
func (p *profiler) close() {
	_ = os.Unsetenv(envProfileDir)
	entries, _ := os.ReadDir(p.dir)
	for _, e := range entries {
		n := e.Name()
		if n == currentFile || strings.HasPrefix(n, readyPrefix) || strings.HasPrefix(n, donePrefix) {
			_ = os.Remove(filepath.Join(p.dir, n))
		}
	}
}

// readyWorkers lists this process's children that said they handle the
// profiling signals (a process not yet ready would die of them).
func (p *profiler) readyWorkers() []int {
	me := os.Getpid()
	entries, _ := os.ReadDir(p.dir)
	var out []int
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), readyPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(s)
		if err != nil || parentOf(pid) != me {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// parentOf returns pid's parent, or -1.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}
