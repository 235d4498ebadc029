package raylet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// shellNode starts a raylet whose "workers" are shell processes running
// script: real processes whose output goes to the workers' logs.
func shellNode(t *testing.T, script string) (*Raylet, *rpc.Conn) {
	t.Helper()
	r, err := Start(Config{SessionDir: t.TempDir(), NumCPUs: 1, StoreCapacity: 1 << 20, WorkerExe: "/bin/sh", WorkerArgs: []string{"-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	c, err := rpc.Dial(context.Background(), r.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return r, c
}

func nodeStats(t *testing.T, c *rpc.Conn) *pb.NodeStats {
	t.Helper()
	st := &pb.NodeStats{}
	if err := c.Call(context.Background(), rpc.MNodeStats, &pb.Empty{}, st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestNodeStatsListsWorkersAndStore(t *testing.T) {
	r, c := shellNode(t, "echo hello; exec sleep 60")
	st := nodeStats(t, c)
	if len(st.Workers) != 1 || st.Workers[0].State != "STARTING" || st.NodeId != r.NodeName() {
		t.Fatalf("workers: %v", st.Workers)
	}
	pid := int(st.Workers[0].Pid)
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
		t.Fatalf("worker pid %d is not a process: %v", pid, err)
	}
	if st.StoreCapacity != 1<<20 || st.MemTotal <= 0 || st.MemUsed <= 0 || len(st.Total) == 0 {
		t.Fatalf("node stats: %v", st)
	}
	id := ids.ForPut()
	if _, err := r.store.Create(id, 4096); err != nil {
		t.Fatal(err)
	}
	if err := r.store.Seal(id); err != nil {
		t.Fatal(err)
	}
	if st := nodeStats(t, c); st.StoreUsed < 4096 || st.StoreObjects != 1 {
		t.Fatalf("store after a put: used %d, %d objects", st.StoreUsed, st.StoreObjects)
	}
	objs := &pb.ObjectList{}
	if err := c.Call(context.Background(), rpc.MListObjects, &pb.Empty{}, objs); err != nil {
		t.Fatal(err)
	}
	if len(objs.Objects) != 1 || objs.Objects[0].Size != 4096 || objs.Objects[0].Kind != "PRIMARY" || !objs.Objects[0].Sealed {
		t.Fatalf("objects: %v", objs.Objects)
	}

	// A killed worker is listed DEAD, with how it ended.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var dead *pb.WorkerRecord
		for _, w := range nodeStats(t, c).Workers {
			if int(w.Pid) == pid && w.State == "DEAD" {
				dead = w
			}
		}
		if dead != nil {
			if dead.EndUnixMs == 0 || dead.ExitCode != -1 {
				t.Errorf("dead worker: %v (a SIGKILL leaves exit code -1)", dead)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d not listed DEAD", pid)
		}
		time.Sleep(10 * time.Millisecond) // the reaper runs on its own goroutine
	}
}

func readLog(c *rpc.Conn, req *pb.LogRequest) (string, error) {
	b, err := c.CallRaw(context.Background(), rpc.MReadLog, req)
	return string(b), err
}

func TestReadLog(t *testing.T) {
	// The worker writes a line, then another once it reads a line from the
	// fifo the test controls.
	fifo := filepath.Join(t.TempDir(), "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, c := shellNode(t, "echo first line; read x < "+fifo+"; echo second line; exec sleep 60")
	pid := nodeStats(t, c).Workers[0].Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := readLog(c, &pb.LogRequest{Pid: pid})
		if err != nil {
			t.Fatal(err)
		}
		if got == "first line\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log: %q", got)
		}
		time.Sleep(10 * time.Millisecond) // the worker starts on its own
	}
	if got, _ := readLog(c, &pb.LogRequest{Pid: pid, Offset: 6, Max: 4}); got != "line" {
		t.Errorf("offset 6, max 4: %q", got)
	}
	if got, _ := readLog(c, &pb.LogRequest{Pid: pid, Offset: -5}); got != "line\n" {
		t.Errorf("the last 5 bytes: %q", got)
	}
	// A read at the end waits for what the worker writes next.
	done := make(chan string, 1)
	go func() {
		got, _ := readLog(c, &pb.LogRequest{Pid: pid, Offset: 11, WaitMs: 10000})
		done <- got
	}()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("go\n")
	_ = f.Close()
	select {
	case got := <-done:
		if got != "second line\n" {
			t.Errorf("waited read: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting read did not return the new line")
	}
	if _, err := readLog(c, &pb.LogRequest{Pid: 1}); err == nil || !strings.Contains(err.Error(), "no worker with pid 1") {
		t.Errorf("unknown pid: %v", err)
	}
	var re *rpc.RemoteError
	if _, err := readLog(c, &pb.LogRequest{Pid: 1}); !errors.As(err, &re) {
		t.Errorf("unknown pid: want a remote error, got %T", err)
	}
}

func TestProcParsing(t *testing.T) {
	s := parseCPU([]byte("cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n"))
	if s.total != 981 || s.busy != 161 {
		t.Fatalf("cpu sample %+v", s)
	}
	later := cpuSample{busy: s.busy + 50, total: s.total + 100}
	if p := later.percentSince(s); p != 50 {
		t.Fatalf("percent %v", p)
	}
	if p := s.percentSince(later); p != 0 {
		t.Fatalf("percent going backwards: %v", p)
	}
	if s := parseCPU([]byte("garbage")); s.total != 0 {
		t.Fatalf("garbage parsed as %+v", s)
	}
	used, total := parseMemInfo(strings.NewReader("MemTotal:       16000 kB\nMemFree:   1000 kB\nMemAvailable:    6000 kB\n"))
	if total != 16000<<10 || used != 10000<<10 {
		t.Fatalf("mem %d/%d", used, total)
	}
}

// FlushOutput is a worker's: any other peer gets a clear error, at once.
func TestFlushOutputRefusesAPeerThatIsNoWorker(t *testing.T) {
	_, c := shellNode(t, "exec sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Call(ctx, rpc.MFlushOutput, &pb.Empty{}, &pb.Empty{})
	if err == nil || !strings.Contains(err.Error(), "FlushOutput is for a registered worker") {
		t.Fatalf("FlushOutput from a peer that is no worker: %v", err)
	}
}
