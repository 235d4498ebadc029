package rayo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/raylet"
)

// hogMemory allocates and touches memory until its worker is killed; it
// stops at 640 MiB, which the memory monitor of TestMemoryMonitor never
// lets it reach.
var hogMemory = Func0(func() int {
	var keep [][]byte
	for len(keep) < 80 {
		b := make([]byte, 8<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page: resident, not just reserved
		}
		keep = append(keep, b)
		time.Sleep(40 * time.Millisecond) // allocate at a pace the monitor's sampling follows
	}
	return len(keep)
}, Name("hogMemory"))

// oomDriverEnv marks the driver process of TestMemoryMonitor.
const oomDriverEnv = "RAYO_TEST_OOM_DRIVER"

// The driver process of TestMemoryMonitor runs before TestMain's Init:
// its embedded cluster's memory monitor sees a node of 320 MiB whose use
// is its workers' memory (raylet.EnvTestMemoryTotal). Its workers (this
// binary again, with the same environment) serve tasks from here.
func init() {
	if os.Getenv(oomDriverEnv) == "" {
		return
	}
	ServeWorker()
	os.Exit(oomDriver())
}

func oomDriver() int {
	if err := Init(NumCPUs(2), LogToDriver(false), DashboardPort(0), MemoryUsageThreshold(0.8)); err != nil {
		fmt.Println("init:", err)
		return 1
	}
	defer Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// An older task, not retriable, that must live on: it is never chosen
	// while a retriable one runs.
	other := sleepMs.Options(MaxRetries(0)).Remote(V(1500))
	for !taskRunning(other) {
		time.Sleep(5 * time.Millisecond) // polling: the other task must be running first
	}
	_, err := Get(ctx, hogMemory.Options(MaxRetries(2)).Remote())
	fmt.Printf("hog-oom %v\n", errors.Is(err, ErrOutOfMemory))
	fmt.Printf("hog-error %v\n", strings.ReplaceAll(fmt.Sprint(err), "\n", " "))
	_, err = Get(ctx, other)
	fmt.Printf("other %v\n", err)
	v, err := Get(ctx, add.Remote(V(1), V(2)))
	fmt.Printf("after %d %v\n", v, err)
	fmt.Printf("raylet-pid %d\n", os.Getpid())
	return 0
}

// TestMemoryMonitor: a task that allocates until killed is killed by the
// memory monitor on each of its attempts and fails with ErrOutOfMemory;
// the driver (which hosts the raylet) and another task live on and finish.
func TestMemoryMonitor(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), oomDriverEnv+"=1", raylet.EnvTestMemoryTotal+"=320MiB", "RAYO_ADDRESS=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	facts := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			facts[k] = v
		}
		t.Log(sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("driver: %v; it said %v", err, facts)
	}
	t.Logf("done in %v", time.Since(start))
	if facts["hog-oom"] != "true" {
		t.Fatalf("hog: want ErrOutOfMemory, got %q", facts["hog-error"])
	}
	msg := facts["hog-error"]
	for _, want := range []string{"hogMemory", "3 attempts", "3 of them", "of 320 MiB", "threshold of 0.8", "largest workers: pid"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if facts["other"] != "<nil>" {
		t.Errorf("the other task: %s", facts["other"])
	}
	if facts["after"] != "3 <nil>" {
		t.Errorf("a task after the kills: %s", facts["after"])
	}
	if pid, _ := strconv.Atoi(facts["raylet-pid"]); pid != cmd.Process.Pid {
		t.Errorf("raylet pid %q, driver pid %d", facts["raylet-pid"], cmd.Process.Pid)
	}
}

func TestMemoryResource(t *testing.T) {
	ctx := ctxT(t)
	total, err := ClusterResources(ctx)
	if err != nil || total["memory"] <= 0 {
		t.Fatalf("ClusterResources: %v %v", total, err)
	}
	// A task asking for some memory runs; one asking for more than the
	// node has can never run.
	if v, err := Get(ctx, add.Options(Memory(1<<20)).Remote(V(2), V(3))); err != nil || v != 5 {
		t.Fatalf("task with Memory(1 MiB): %v %v", v, err)
	}
	huge := int64(total["memory"]) * 2
	if _, err := Get(ctx, add.Options(Memory(huge)).Remote(V(2), V(3))); !errors.Is(err, ErrInfeasible) {
		t.Fatalf("task with Memory(twice the node's): %v, want ErrInfeasible", err)
	}
	for _, bad := range []int64{0, -1} {
		if _, err := Get(ctx, add.Options(Memory(bad)).Remote(V(2), V(3))); err == nil || !strings.Contains(err.Error(), "Memory") {
			t.Errorf("Memory(%d): %v, want an error", bad, err)
		}
	}
	if err := Init(MemoryUsageThreshold(1.5)); err == nil || !strings.Contains(err.Error(), "MemoryUsageThreshold") {
		t.Errorf("Init(MemoryUsageThreshold(1.5)): %v", err)
	}
}
