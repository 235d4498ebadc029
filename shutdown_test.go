package rayo

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
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
	pids := localRaylet().WorkerPIDs()
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
