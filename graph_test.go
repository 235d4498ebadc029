package rayo

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// gate returns 0 once a byte can be read from the named pipe: the test
// holds a whole graph back with it while it measures.
var gate = Func1(func(fifo string) int {
	f, err := os.Open(fifo)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	_, _ = f.Read(make([]byte, 1))
	return 0
})

// TestTenThousandTaskGraph runs a graph of 10,000 tasks (a tree of adds
// over 5,000 leaves) and checks the driver's memory per task in flight,
// and that everything is released afterwards.
func TestTenThousandTaskGraph(t *testing.T) {
	ctx := ctxT(t)
	var before, during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fifo := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	g := gate.Remote(V(fifo))
	level := make([]Ref[int], 5000)
	for i := range level {
		level[i] = add.Remote(g, V(i+1))
	}
	tasks := len(level) + 1
	for len(level) > 1 {
		var next []Ref[int]
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, add.Remote(level[i], level[i+1]))
			tasks++
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		level = next
	}
	runtime.GC()
	runtime.ReadMemStats(&during)
	now, cancel := context.WithCancel(ctx)
	cancel() // Wait with a finished context reports what is ready now
	if _, rest, _ := Wait(now, level, 1); len(rest) != 1 {
		t.Fatal("graph finished before the gate opened")
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte{1})
	_ = w.Close()
	got, err := Get(ctx, level[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := 5000 * 5001 / 2; got != want {
		t.Fatalf("sum: got %d want %d", got, want)
	}
	perTask := float64(during.HeapAlloc-before.HeapAlloc) / float64(tasks)
	t.Logf("%d tasks; driver heap while all are pending: %.0f bytes per task", tasks, perTask)
	if perTask > 8<<10 {
		t.Errorf("driver heap per task %.0f bytes, want at most 8 KiB", perTask)
	}
	level = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		if s := cluster.rt.Stats(); s.Objects == 0 && s.Tasks == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects still held: %+v", cluster.rt.Stats())
		}
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
}
