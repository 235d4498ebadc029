package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo"
)

// ChildCommand is the hidden first argument with which the suite re-runs
// its own executable for a measurement that needs a process of its own.
// main (or TestMain) must pass what follows it to RunChild, after
// rayo.ServeWorker and before anything else.
const ChildCommand = "__bench-child"

// Child modes.
const (
	childEcho      = "echo"       // echo <socket> <cpu>: the peer of unix_socket_round_trips
	childInitFirst = "init-first" // init-first <cpus>: one init_to_first_result
)

// msgSize is the size of each message of unix_socket_round_trips: about a
// small task's push or reply.
const msgSize = 64

// initResultPrefix starts the line on which the init-first child reports.
const initResultPrefix = "init_to_first_result_ns="

// RunChild is the child side of the measurements that re-run this
// executable; args are the arguments after ChildCommand.
func RunChild(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("bench child: want <mode> <args>, got %q", args)
	}
	switch args[0] {
	case childEcho:
		if len(args) != 3 {
			return fmt.Errorf("bench child: want echo <socket> <cpu>, got %q", args[1:])
		}
		cpu, err := strconv.Atoi(args[2])
		if err != nil {
			return fmt.Errorf("bench child: bad CPU %q", args[2])
		}
		return echoPeer(args[1], cpu)
	case childInitFirst:
		cpus, err := strconv.ParseFloat(args[1], 64)
		if err != nil {
			return fmt.Errorf("bench child: bad CPU count %q", args[1])
		}
		d, err := firstResult(cpus)
		if err != nil {
			return err
		}
		fmt.Printf("%s%d\n", initResultPrefix, d.Nanoseconds())
		return nil
	case childSpill:
		if len(args) != 3 {
			return fmt.Errorf("bench child: want spill <cpus> <bytes>, got %q", args[1:])
		}
		cpus, err := strconv.ParseFloat(args[1], 64)
		if err != nil {
			return fmt.Errorf("bench child: bad CPU count %q", args[1])
		}
		total, err := strconv.Atoi(args[2])
		if err != nil || total < 64<<10 {
			return fmt.Errorf("bench child: bad spill size %q (at least 64 KiB)", args[2])
		}
		return spillChild(cpus, total)
	case childColdPut:
		if len(args) != 3 {
			return fmt.Errorf("bench child: want cold-put <bytes> <cpus>, got %q", args[1:])
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n <= 0 {
			return fmt.Errorf("bench child: bad size %q", args[1])
		}
		cpus, err := strconv.ParseFloat(args[2], 64)
		if err != nil {
			return fmt.Errorf("bench child: bad CPU count %q", args[2])
		}
		d, err := coldPut(n, cpus)
		if err != nil {
			return err
		}
		fmt.Printf("%s%d %d %d %d\n", coldPutPrefix, d[0].Nanoseconds(), d[1].Nanoseconds(), d[2].Nanoseconds(), d[3].Nanoseconds())
		return nil
	}
	return fmt.Errorf("bench child: unknown mode %q", args[0])
}

// self prepares a run of this executable in a child mode.
func self(ctx context.Context, mode string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{ChildCommand, mode}, args...)...)
	cmd.Stderr = os.Stderr
	return cmd, nil
}

// init_to_first_result: in a fresh process, the time from rayo.Init to the
// result of the first task, in milliseconds: the median of up to five
// runs within cfg.Duration (at least one).
func initToFirstResult(e *env) (float64, string, error) {
	var ms []float64
	deadline := time.Now().Add(e.cfg.Duration)
	for len(ms) < 1 || (len(ms) < 5 && time.Now().Before(deadline)) {
		cmd, err := self(e.ctx, childInitFirst, strconv.Itoa(e.cfg.NumCPUs))
		if err != nil {
			return 0, "", err
		}
		out, err := cmd.Output()
		if err != nil {
			return 0, "", fmt.Errorf("child: %w", err)
		}
		var ns int64 = -1
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), initResultPrefix); ok {
				ns, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if ns < 0 {
			return 0, "", fmt.Errorf("child said nothing about its first result: %q", out)
		}
		ms = append(ms, float64(ns)/1e6)
	}
	return median(ms), fmt.Sprintf("median of %d fresh clusters, best %.1f ms", len(ms), minOf(ms)), nil
}

// firstResult is the child side of init_to_first_result.
func firstResult(cpus float64) (time.Duration, error) {
	start := time.Now()
	if err := rayo.Init(rayo.NumCPUs(cpus), rayo.LogToDriver(false)); err != nil {
		return 0, err
	}
	defer rayo.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rayo.Get(ctx, noop.Remote()); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// unix_socket_round_trips: the floor for anything that crosses processes.
// A child process echoes msgSize-byte messages over a Unix socket; this
// process sends one and waits for it to come back, again and again, both
// sides with Go's net package as rayo's own protocol does.
//
// On a small VM the figure depends on whether the two processes share a
// CPU: a wakeup across CPUs costs tens of µs, on one CPU a few, and
// unpinned processes flip between the two, so that one unpinned
// measurement varies threefold from run to run. The floor is the fastest
// case, stable from run to run: both processes pinned (every thread, for
// the measurement only) to the same CPU. A rayo round trip cannot beat it.
// The note gives the unpinned figure (the median of echoRounds children;
// DESIGN's "about 30,000" is its slow mode) and the figure pinned to two
// different CPUs. With one CPU nothing is pinned.
func unixSocketRoundTrips(e *env) (float64, string, error) {
	cpus, err := allowedCPUs()
	if err != nil || len(cpus) < 2 {
		v, err := e.echoRound(-1, -1, e.cfg.Duration, true)
		return v, fmt.Sprintf("%s per %d-byte round trip (one CPU)", dur(v), msgSize), err
	}
	v, err := e.echoRound(cpus[0], cpus[0], e.cfg.Duration, true)
	if err != nil {
		return 0, "", err
	}
	const echoRounds = 5
	var rates []float64
	for range echoRounds {
		r, err := e.echoRound(-1, -1, max(e.cfg.Duration/10, time.Millisecond), false)
		if err != nil {
			return 0, "", err
		}
		rates = append(rates, r)
	}
	cross, err := e.echoRound(cpus[0], cpus[1], max(e.cfg.Duration/4, time.Millisecond), false)
	if err != nil {
		return 0, "", err
	}
	return v, fmt.Sprintf("%s per %d-byte round trip, one CPU; unpinned %s (%s–%s); two CPUs %s",
		dur(v), msgSize, number(median(rates)), number(minOf(rates)), number(slices.Max(rates)), number(cross)), nil
}

// echoRound measures round trips with one echo child, this process pinned
// to CPU mine and the child to CPU its (-1: not pinned), for d after a
// warm-up, profiled when asked.
func (e *env) echoRound(mine, its int, d time.Duration, profile bool) (float64, error) {
	dir, err := os.MkdirTemp("", "rayo-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "echo.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	cmd, err := self(e.ctx, childEcho, path, strconv.Itoa(its))
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	_ = ln.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		return 0, fmt.Errorf("echo child did not connect: %w", err)
	}
	defer c.Close()
	if mine >= 0 {
		restore, err := pinSelf(mine)
		if err != nil {
			return 0, err
		}
		defer restore()
	}
	buf := make([]byte, msgSize)
	for i := range buf {
		buf[i] = byte(i)
	}
	op := func() error {
		if _, err := c.Write(buf); err != nil {
			return err
		}
		_, err := io.ReadFull(c, buf)
		return err
	}
	if _, _, err := e.loop(min(d/4, 100*time.Millisecond), op); err != nil {
		return 0, err
	}
	if profile && e.prof != nil {
		if err := e.prof.start(e.name); err != nil {
			return 0, err
		}
		defer e.prof.stop()
	}
	return e.rateFor(d, 1, op)
}

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	var out []int
	for i := range 1024 {
		if set.IsSet(i) {
			out = append(out, i)
		}
	}
	return out, nil
}

// pinSelf confines every thread of this process to cpu, and returns how to
// undo it. Threads started meanwhile inherit the confinement and are
// released by the undo too.
func pinSelf(cpu int) (restore func(), err error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, err
	}
	set.Set(cpu)
	if err := setAllThreads(&set); err != nil {
		_ = setAllThreads(&old)
		return nil, err
	}
	return func() { _ = setAllThreads(&old) }, nil
}

// setAllThreads sets the CPU affinity of every thread of this process
// (twice, to catch threads started during the first pass).
func setAllThreads(set *unix.CPUSet) error {
	for range 2 {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, ent := range entries {
			tid, err := strconv.Atoi(ent.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pinning thread %d: %w", tid, err)
			}
		}
	}
	return nil
}

// echoPeer is the child side of unix_socket_round_trips.
func echoPeer(path string, cpu int) error {
	if cpu >= 0 {
		if _, err := pinSelf(cpu); err != nil {
			return err
		}
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, msgSize)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
}

// memcpy_gigabytes: the floor for moving bytes: copy of a warm []byte of
// cfg.PutBytes into another, in GB (1e9 bytes) per second.
func memcpyGigabytes(e *env) (float64, string, error) {
	src := make([]byte, e.cfg.PutBytes)
	dst := make([]byte, e.cfg.PutBytes)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // fault dst's pages in
	v, err := e.rate(float64(len(src))/1e9, func() error {
		copy(dst, src)
		return nil
	})
	return v, fmt.Sprintf("%s per %s copy", dur(v/(float64(len(src))/1e9)), size(len(src))), err
}
