package raylet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// What a raylet tells the state API about its node: its workers, its
// store's objects, the machine's load, and its workers' logs.

const (
	maxGoneWorkers = 500     // ended workers remembered
	maxListObjects = 10000   // objects one ListObjects returns
	maxLogRead     = 1 << 20 // bytes one ReadLog returns
	maxLogWait     = 30 * time.Second
)

// handleStats registers MNodeStats, MListObjects and MReadLog.
func (r *Raylet) handleStats(mx *rpc.Mux) {
	rpc.Handle(mx, rpc.NodeStats, func(context.Context, *pb.Empty) (*pb.NodeStats, error) { return r.NodeStats(), nil })
	rpc.Handle(mx, rpc.ListObjects, func(context.Context, *pb.Empty) (*pb.ObjectList, error) { return r.listObjects(), nil })
	rpc.HandleRaw(mx, rpc.ReadLog, func(_ context.Context, req *pb.LogRequest, reply func([]byte, error)) {
		// A read may wait: not on the connection's read loop.
		if !r.goTracked(func() { reply(r.ReadLog(context.Background(), req)) }) {
			reply(nil, ErrClosed)
		}
	})
}

// NodeStats describes the node: its workers (and the last that ended),
// its store, the machine's CPU and memory, and its resources.
func (r *Raylet) NodeStats() *pb.NodeStats {
	total, avail, _ := r.Resources()
	st := r.store.Stats()
	out := &pb.NodeStats{
		NodeId: r.cfg.NodeName, StoreUsed: st.Used, StoreCapacity: st.Capacity, StoreObjects: int64(st.Objects),
		SessionDir: r.cfg.SessionDir, Total: total, Available: avail, MetricsAddr: r.MetricsAddr(),
	}
	out.MemUsed, out.MemTotal = memInfo()
	if d := r.spill.disk; d != nil {
		sp := d.Stats()
		out.SpilledBytes, out.SpilledObjects, out.SpillDir = sp.LiveBytes, int64(sp.Objects), d.Dir()
	}
	xs := r.xfer.Stats()
	out.BytesPulled, out.BytesServed = xs.BytesIn, xs.BytesOut
	now := readCPU()
	r.mu.Lock()
	defer r.mu.Unlock()
	out.CpuPercent = now.percentSince(r.cpuPrev)
	r.cpuPrev = now
	for _, w := range r.workers {
		out.Workers = append(out.Workers, r.workerRecordLocked(w))
	}
	for _, w := range r.gone {
		if r.workers[w.id] == nil {
			out.Workers = append(out.Workers, r.workerRecordLocked(w))
		}
	}
	// The drivers on this node: the one hosting an embedded raylet, or
	// those that joined through it.
	if r.local != nil && r.cfg.EmbeddedJob != "" {
		out.Workers = append(out.Workers, &pb.WorkerRecord{JobId: r.cfg.EmbeddedJob, NodeId: r.cfg.NodeName, Type: "DRIVER", State: "ALIVE",
			Pid: int32(os.Getpid()), StartUnixMs: r.started.UnixMilli()})
	}
	for _, j := range r.jobs {
		if !j.remote && j.conn != nil {
			out.Workers = append(out.Workers, &pb.WorkerRecord{JobId: j.id, NodeId: r.cfg.NodeName, Type: "DRIVER", State: "ALIVE",
				Pid: int32(j.pid), StartUnixMs: j.start.UnixMilli()})
		}
	}
	return out
}

func (r *Raylet) workerRecordLocked(w *workerProc) *pb.WorkerRecord {
	rec := &pb.WorkerRecord{
		WorkerId: w.id[:], Pid: int32(w.pid), JobId: w.job, NodeId: r.cfg.NodeName, Type: "WORKER", Addr: w.addr,
		StartUnixMs: w.started.UnixMilli(), ExitCode: int32(w.exitCode),
		LogFile: filepath.Join(r.cfg.SessionDir, "logs", fmt.Sprintf("worker-%d.log", w.pid)),
	}
	if rec.JobId == "" {
		rec.JobId = r.cfg.EmbeddedJob
	}
	switch {
	case w.dead:
		rec.State, rec.EndUnixMs = "DEAD", w.ended.UnixMilli()
	case w.conn == nil:
		rec.State = "STARTING"
	case w.lease == nil:
		rec.State = "IDLE"
	case w.lease.dedicated:
		rec.State, rec.ActorId = "ACTOR", w.lease.actorID
	default:
		rec.State = "LEASED"
	}
	return rec
}

// listObjects lists the objects in the store: created here (PRIMARY) or
// pulled from another node (COPY).
func (r *Raylet) listObjects() *pb.ObjectList {
	copies := map[ids.ObjectID]bool{}
	for _, id := range r.xfer.Copies() {
		copies[id] = true
	}
	out := &pb.ObjectList{}
	r.store.Each(func(id ids.ObjectID, size int64, sealed bool) bool {
		kind := "PRIMARY"
		if copies[id] {
			kind = "COPY"
		}
		out.Objects = append(out.Objects, &pb.ObjectRecord{ObjectId: id[:], Size: size, NodeId: r.cfg.NodeName, Sealed: sealed, Kind: kind, Location: "MEMORY"})
		return len(out.Objects) < maxListObjects
	})
	if d := r.spill.disk; d != nil && len(out.Objects) < maxListObjects {
		d.Each(func(id ids.ObjectID, size int64) bool {
			out.Objects = append(out.Objects, &pb.ObjectRecord{ObjectId: id[:], Size: size, NodeId: r.cfg.NodeName, Sealed: true, Kind: "PRIMARY", Location: "SPILLED"})
			return len(out.Objects) < maxListObjects
		})
	}
	return out
}

// logWritten wakes the readers waiting for a worker's log to grow.
func (r *Raylet) logWritten() {
	r.logWakeMu.Lock()
	if r.logWake != nil {
		close(r.logWake)
		r.logWake = nil
	}
	r.logWakeMu.Unlock()
}

// logChanged is closed at the next write to any worker's log.
func (r *Raylet) logChanged() <-chan struct{} {
	r.logWakeMu.Lock()
	defer r.logWakeMu.Unlock()
	if r.logWake == nil {
		r.logWake = make(chan struct{})
	}
	return r.logWake
}

// ReadLog reads part of the log of one of this node's workers (by pid or
// worker ID): [offset, offset+max), a negative offset counting from the
// end. A read at the end waits up to wait_ms for more.
func (r *Raylet) ReadLog(ctx context.Context, req *pb.LogRequest) ([]byte, error) {
	pid := int(req.Pid)
	r.mu.Lock()
	var known *workerProc
	for _, list := range [][]*workerProc{r.gone, r.workerList()} {
		for _, w := range list {
			if (pid != 0 && w.pid == pid) || (len(req.WorkerId) > 0 && string(w.id[:]) == string(req.WorkerId)) {
				known, pid = w, w.pid
			}
		}
	}
	r.mu.Unlock()
	if known == nil {
		return nil, fmt.Errorf("raylet: node %s has no worker with pid %d or ID %x", r.cfg.NodeName, req.Pid, req.WorkerId)
	}
	max := req.Max
	if max <= 0 || max > maxLogRead {
		max = maxLogRead
	}
	path := filepath.Join(r.cfg.SessionDir, "logs", fmt.Sprintf("worker-%d.log", pid))
	wait := time.Duration(min(req.WaitMs, int64(maxLogWait/time.Millisecond))) * time.Millisecond
	deadline := time.Now().Add(wait)
	windowed := req.StartUnixNs != 0 || req.EndUnixNs != 0 || len(req.TaskId) > 0
	var key uint64
	if len(req.TaskId) > 0 {
		key = rayletclient.TaskLogKey(req.TaskId, req.Attempt)
	}
	for {
		changed := r.logChanged() // before reading: a write after the read wakes us
		var b []byte
		var err error
		open := true
		if windowed {
			lo, hi, last, ok := known.taskSpan(key)
			running := req.EndUnixNs == 0 || time.Now().UnixNano() <= req.EndUnixNs+lateLines.Nanoseconds()
			switch {
			case ok:
				// The task's own lines, up to the next task's mark; the last
				// task's stay open while it runs, and a while after.
				open = last && running
			case known.silent(key, req.StartUnixNs):
				// Nothing printed, so far: its mark comes with its first
				// bytes.
				lo, hi, open = 0, 0, running
			default:
				lo, hi, open = known.window(req.StartUnixNs, req.EndUnixNs)
			}
			off := req.Offset
			if off < 0 {
				off = hi - lo + off
				if off < 0 {
					off = 0
				}
			}
			if n := min(max, hi-lo-off); n > 0 {
				b, err = readAt(path, lo+off, n)
			}
		} else {
			b, err = readAt(path, req.Offset, max)
		}
		if err != nil || len(b) > 0 || wait <= 0 || !open {
			return b, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return b, nil
		}
		t := time.NewTimer(left)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
		case <-r.stop:
		}
		t.Stop()
		if ctx.Err() != nil || r.isClosed() {
			return nil, nil
		}
	}
}

func (r *Raylet) workerList() []*workerProc {
	out := make([]*workerProc, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, w)
	}
	return out
}

func (r *Raylet) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// readAt reads up to max bytes of the file at off (from its end if
// negative). A file not yet written reads as empty.
func readAt(path string, off, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raylet: read log: %w", err)
	}
	defer f.Close()
	if off < 0 {
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("raylet: read log: %w", err)
		}
		off = fi.Size() + off
		if off < 0 {
			off = 0
		}
	}
	b := make([]byte, max)
	n, err := f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("raylet: read log: %w", err)
	}
	return b[:n], nil
}

// cpuSample is the machine's CPU times, from /proc/stat.
type cpuSample struct{ busy, total uint64 }

func readCPU() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	return parseCPU(b)
}

// parseCPU reads the "cpu" line of /proc/stat: user nice system idle
// iowait irq softirq steal ...; idle and iowait are not busy.
func parseCPU(b []byte) cpuSample {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuSample{}
	}
	var s cpuSample
	for i, x := range f[1:] {
		v, _ := strconv.ParseUint(x, 10, 64)
		if i >= 8 {
			break // guest times are counted in user already
		}
		s.total += v
		if i != 3 && i != 4 {
			s.busy += v
		}
	}
	return s
}

// percentSince is the busy share of CPU time between prev and s.
func (s cpuSample) percentSince(prev cpuSample) float64 {
	if s.total <= prev.total || s.busy < prev.busy {
		return 0
	}
	return 100 * float64(s.busy-prev.busy) / float64(s.total-prev.total)
}

// memInfo is the machine's memory in use (total less available) and total.
func memInfo() (used, total int64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	return parseMemInfo(f)
}

func parseMemInfo(rd io.Reader) (used, total int64) {
	var avail int64
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return max(total-avail, 0), total
}
