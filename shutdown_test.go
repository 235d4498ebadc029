package rayo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestShutdownLeavesNothing checks that after Shutdown no goroutine, worker
// process or socket of the cluster remains.
func TestShutdownLeavesNothing(t *testing.T) {
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Init(NumCPUs(2)); err != nil {
			t.Fatal(err)
		}
	})
	baseline := runtime.NumGoroutine()
	if err := Init(NumCPUs(2)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	refs := make([]Ref[int], 5)
	for i := range refs {
		refs[i] = runExp.Remote(V(i))
	}
	if _, err := GetAll(ctx, refs); err != nil {
		t.Fatal(err)
	}
	big := Put(ctx, make([]float64, 1<<18))
	if _, err := Get(ctx, sumVec.Remote(big)); err != nil {
		t.Fatal(err)
	}
	pids := cluster.raylet.WorkerPIDs()
	session := SessionDir()
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("worker %d outlived Shutdown", pid)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(session, "*.sock"))
	if len(socks) > 0 {
		t.Errorf("sockets left: %v", socks)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after Shutdown, %d before Init:\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		time.Sleep(10 * time.Millisecond) // exiting goroutines finish on their own schedule
	}
	if _, err := os.Stat(session); err == nil {
		logs, _ := os.ReadDir(filepath.Join(session, "logs"))
		for _, l := range logs {
			if !strings.HasSuffix(l.Name(), ".log") {
				t.Errorf("unexpected file in logs: %s", l.Name())
			}
		}
	}
}

func TestPruneSessions(t *testing.T) {
	root := t.TempDir()
	// Folders of drivers that are gone (pid 1<<30 cannot exist) and of
	// this one, which must stay.
	for i := 0; i < 5; i++ {
		dir := filepath.Join(root, fmt.Sprintf("s-%d-%d", 1<<30, i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mod := time.Now().Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(dir, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	mine := filepath.Join(root, fmt.Sprintf("s-%d-x", os.Getpid()))
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	// A joined driver's folder: gone with its driver, kept while it runs.
	for _, d := range []string{fmt.Sprintf("job-%d-ab12", 1<<30), fmt.Sprintf("job-%d-cd34", os.Getpid())} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pruneSessions(root, 2)
	left, _ := os.ReadDir(root)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	want := []string{fmt.Sprintf("s-%d-3", 1<<30), fmt.Sprintf("s-%d-4", 1<<30), filepath.Base(mine), fmt.Sprintf("job-%d-cd34", os.Getpid())}
	sort.Strings(want)
	if fmt.Sprint(names) != fmt.Sprint(want) { // ReadDir sorts by name too
		t.Fatalf("left %v, want %v", names, want)
	}
}
