package objstore

import (
	"io"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// While the prefault window maps, a process of one Go processor still
// answers its sockets at once: the mapper parks now and then, so that the
// scheduler polls the network. A mapper that only yielded left what
// arrived waiting for the runtime's next forced poll (up to 10 ms), and
// one on a thread of the idle class kept the processor while the kernel
// let that thread wait for a CPU; either way the process looked quiet, and
// the mapper went on mapping.
func TestMappingLeavesTheNetworkPolled(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "echo.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	a := newArena(t, 512*writeChunk)
	a.PrefaultAhead(512 * writeChunk) // no activity given: it maps at once, and long
	deadline := time.Now().Add(10 * time.Second)
	for a.w.touched.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the window's first chunk was not mapped in 10s")
		}
		time.Sleep(time.Millisecond)
	}
	before := a.w.touched.Load()
	var rtts []time.Duration
	b := []byte{1}
	for range 50 {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	mapped := a.w.touched.Load() - before
	if mapped == 0 {
		t.Fatal("the mapper mapped nothing during the round trips")
	}
	slices.Sort(rtts)
	if med := rtts[len(rtts)/2]; med > 4*time.Millisecond {
		t.Fatalf("median round trip %v over a socket of this process while the window mapped (%d chunks meanwhile), want under 4ms", med, mapped)
	}
}

// A step of the mapper runs at stepNice, and its thread gets its nice
// value back after: the thread goes on to run other goroutines.
func TestLowlyPutsTheNiceValueBack(t *testing.T) {
	runtime.LockOSThread() // one thread for the whole test
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	before, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		t.Fatal(err)
	}
	var during int
	lowly(func() { during, _ = unix.Getpriority(unix.PRIO_PROCESS, tid) })
	after, _ := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if after != before {
		t.Fatalf("the thread's priority is %d after a step, %d before", after, before)
	}
	if before <= maxRaisable() && during != 20-stepNice {
		t.Fatalf("a step ran at priority %d, want %d (nice %d)", during, 20-stepNice, stepNice)
	}
}
