package raylet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// startWorkerLocked starts one worker process: the configured executable
// in worker mode, its stdout and stderr captured into one log.
func (r *Raylet) startWorkerLocked(jobID string) error {
	exe, args, env := r.cfg.WorkerExe, r.cfg.WorkerArgs, r.cfg.WorkerEnv
	if jobID != "" {
		j := r.jobs[jobID]
		if j == nil {
			return fmt.Errorf("raylet: job %q has ended", jobID)
		}
		exe, args, env = j.exe, j.args, j.env
	}
	if exe == "" {
		return errors.New("raylet: no job on this node has given it a worker executable yet")
	}
	wid := ids.NewWorkerID()
	cmd := exec.Command(exe, args...)
	cmd.Env = r.workerEnv(jobID, wid, env)
	files, err := newWorkerFiles()
	if err != nil {
		return err
	}
	store, err := r.arena.File()
	if err != nil {
		files.close()
		return err
	}
	files.setUp(cmd, store)
	err = cmd.Start()
	files.started()
	_ = store.Close()
	if err != nil {
		files.close()
		return fmt.Errorf("raylet: start worker: %w", err)
	}
	w := &workerProc{job: jobID, id: wid, pid: cmd.Process.Pid, proc: cmd.Process, exited: make(chan struct{}), started: time.Now(), exitCode: -1}
	w.keep(files)
	// The goroutine that waits for the process holds cmd for the worker's
	// life: what only the start needed (the environment, the files, 2
	// KiB of the node's heap per worker) is dropped from it.
	cmd.Env, cmd.ExtraFiles, cmd.Stdout, cmd.Stderr = nil, nil, nil, nil
	pr := files.log
	r.workers[wid] = w
	r.log.Debug("worker started", "pid", w.pid, "job", jobID)
	r.starting++
	r.startingJ[jobID]++
	r.procs.Add(2)
	go func() {
		defer r.procs.Done()
		_ = cmd.Wait()
		// A worker removes its socket when it exits cleanly; one killed
		// cannot.
		_ = os.Remove(rayletclient.WorkerSocket(r.cfg.SessionDir, w.pid))
		r.mu.Lock()
		w.exitCode = cmd.ProcessState.ExitCode()
		r.workerGoneLocked(w)
		var after []func()
		r.grantLocked(&after)
		r.mu.Unlock()
		run(after)
		close(w.exited)
	}()
	go func() {
		defer r.procs.Done()
		r.copyLog(pr, w, jobID)
	}()
	return nil
}

// workerEnv is the environment of a worker of job jobID (the node's own
// if empty): the node's, then env, the job's own, then where the worker
// finds its raylet, store, session and, in a cluster of several nodes,
// the other nodes.
func (r *Raylet) workerEnv(jobID string, wid ids.WorkerID, env []string) []string {
	out := append(workerBaseEnv(os.Environ(), r.cfg.InheritEnv), env...)
	out = append(out,
		rayletclient.EnvJob+"="+jobID,
		rayletclient.EnvWorkerID+"="+wid.String(),
		rayletclient.EnvRaylet+"="+r.addr,
		rayletclient.EnvStore+"=fd:3",
		rayletclient.EnvSessionDir+"="+r.cfg.SessionDir,
		rayletclient.EnvNode+"="+r.cfg.NodeName,
	)
	if r.tcp != nil {
		host, _, _ := net.SplitHostPort(r.tcp.Addr().String())
		out = append(out,
			rayletclient.EnvListen+"="+net.JoinHostPort(host, "0"),
			// The job's credential, never the cluster's secret (see
			// jobToken).
			rayletclient.EnvToken+"="+r.jobToken(jobID),
			pki.EnvJobKey+"="+pki.JobKey(r.cfg.Token),
			rayletclient.EnvNodeAddr+"="+r.TCPAddr(),
		)
	}
	return out
}

// copyLog writes a worker's output to its log file and, when asked, to the
// driver, each line prefixed with the task's name and the worker's pid.
func (r *Raylet) copyLog(pr *logPipe, w *workerProc, jobID string) {
	defer func() {
		_ = pr.Close()
		w.outputCopied()
	}()
	pid := w.pid
	w.logPipe.Store(pr)
	f, err := os.OpenFile(filepath.Join(r.cfg.SessionDir, "logs", fmt.Sprintf("worker-%d.log", pid)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		f = nil
	}
	if f != nil {
		defer f.Close()
	}
	name := "worker"
	marker := []byte(rayletclient.NameMarker)
	// What the worker left in its capture pipe follows its output's end.
	sc := bufio.NewScanner(io.MultiReader(pr, &leftover{w: w}))
	// Every worker holds this buffer for its life, and most print little:
	// it starts small (a dozen marks to a read) and grows with long lines.
	sc.Buffer(make([]byte, 0, 512), 16<<20)
	for sc.Scan() {
		w.logLines.Add(1)
		raw := sc.Bytes()
		var key uint64
		marked := false
		if i := bytes.Index(raw, marker); i >= 0 {
			// A task starts: its name prefixes the lines from here on. What
			// came before the marker on its line (printed without a newline)
			// is the previous task's.
			var n []byte
			n, key = rayletclient.ParseTaskMark(raw[i+len(marker):])
			if string(n) != name {
				name = string(n)
			}
			raw, marked = raw[:i], true
			if len(raw) == 0 {
				w.markTask(key)
				continue
			}
		}
		line := string(raw)
		// The driver's copy first: once a line is in the file, it has been
		// shown (tests rely on that order).
		prefixed := fmt.Sprintf("(%s pid=%d) %s", name, pid, line)
		switch {
		case jobID != "":
			// A job's driver is another process: send it the line.
			r.mu.Lock()
			j := r.jobs[jobID]
			r.mu.Unlock()
			if j != nil && j.logs {
				_ = rpc.Notify(j.conn, rpc.Log, &pb.LogLines{Lines: []string{prefixed}})
			}
		case r.cfg.LogToDriver:
			r.logMu.Lock()
			fmt.Fprintln(r.cfg.LogOutput, prefixed)
			r.logMu.Unlock()
		}
		if f != nil {
			n, _ := fmt.Fprintln(f, line)
			w.markLine(int64(n))
		}
		if marked {
			w.markTask(key)
		}
		r.logWritten()
	}
}

// maxLogMarks bounds the lines a worker's log index remembers (16 bytes
// each), and maxTaskMarks the task starts (16 bytes each); older lines
// are still in the log, but no task's own.
const (
	maxLogMarks  = 1 << 16
	maxTaskMarks = 1 << 14
)

// lineMark is where a line starts in a worker's log and when it arrived.
type lineMark struct{ off, at int64 }

// taskMark is where a task attempt's lines start in a worker's log and
// when its mark arrived: key is its rayletclient.TaskLogKey, or 0 for a
// task that gave none (a call of a concurrent actor).
type taskMark struct {
	off, at int64
	key     uint64
}

// markTask records that the lines written to w's log from now on are
// those of the task attempt key, up to the next mark. A second mark of the
// attempt just marked (the label of what a dead worker left) goes on its
// span.
func (w *workerProc) markTask(key uint64) {
	w.markMu.Lock()
	defer w.markMu.Unlock()
	if n := len(w.tasks); key != 0 && n > 0 && w.tasks[n-1].key == key {
		return
	}
	if len(w.tasks) == maxTaskMarks {
		w.tasks = append(w.tasks[:0], w.tasks[maxTaskMarks/2:]...)
		w.evictedAt = w.tasks[0].at
	}
	w.tasks = append(w.tasks, taskMark{off: w.logSize, at: time.Now().UnixNano(), key: key})
}

// silent says whether the task attempt key, started at start (Unix ns, 0
// if not known), has printed nothing so far, as w knows although it holds
// no mark of it: w captures its output, so marks only tasks that print,
// runs one task at a time, and has dropped no mark a task started since
// could have written.
func (w *workerProc) silent(key uint64, start int64) bool {
	if key == 0 {
		return false
	}
	w.markMu.Lock()
	defer w.markMu.Unlock()
	flags := w.flags
	if _, ok := w.label.fd(); ok {
		flags, _, _ = readLabel(w.label)
	}
	if flags&rayletclient.LabelCapturing == 0 || flags&rayletclient.LabelConcurrent != 0 {
		return false
	}
	return w.evictedAt == 0 || (start != 0 && start >= w.evictedAt)
}

// outputCopied closes w's label page, keeping its flags, and its capture
// pipe.
func (w *workerProc) outputCopied() {
	w.markMu.Lock()
	defer w.markMu.Unlock()
	if _, ok := w.label.fd(); ok {
		w.flags, _, _ = readLabel(w.label)
		w.label.close()
	}
	w.capture.close()
}

// captured is how many bytes wait in w's capture pipe for the worker to
// pass them on.
func (w *workerProc) captured() int {
	w.markMu.Lock()
	defer w.markMu.Unlock()
	fd, ok := w.capture.fd()
	if !ok {
		return 0
	}
	n, _ := unix.IoctlGetInt(fd, unix.TIOCINQ)
	return n
}

// taskSpan is the part [lo, hi) of w's log that the task attempt key
// printed: from its mark to the next one. last says no task has started
// since (more of its lines may come); ok false, that no mark of it is
// kept.
func (w *workerProc) taskSpan(key uint64) (lo, hi int64, last, ok bool) {
	if key == 0 {
		return 0, 0, false, false
	}
	w.markMu.Lock()
	defer w.markMu.Unlock()
	for i := len(w.tasks) - 1; i >= 0; i-- {
		if w.tasks[i].key != key {
			continue
		}
		if i+1 < len(w.tasks) {
			return w.tasks[i].off, w.tasks[i+1].off, false, true
		}
		return w.tasks[i].off, w.logSize, true, true
	}
	return 0, 0, false, false
}

// markLine records a line of n bytes just written to w's log.
func (w *workerProc) markLine(n int64) {
	w.markMu.Lock()
	defer w.markMu.Unlock()
	if len(w.marks) == maxLogMarks {
		w.marks = append(w.marks[:0], w.marks[maxLogMarks/2:]...)
	}
	w.marks = append(w.marks, lineMark{off: w.logSize, at: time.Now().UnixNano()})
	w.logSize += n
}

// lateLines is how long after a task's end its last lines may still
// reach the raylet: the raylet reads the worker's pipe on its own time, and
// on a busy machine runs tens of milliseconds late.
const lateLines = 250 * time.Millisecond

// window is the part [lo, hi) of w's log holding the lines that arrived
// within [start, end+lateLines] (end 0: open); open says more may come.
// It is for tasks without a mark of their own, whose lines may mix with
// others' printed then.
func (w *workerProc) window(start, end int64) (lo, hi int64, open bool) {
	if end > 0 {
		end += lateLines.Nanoseconds()
	}
	w.markMu.Lock()
	defer w.markMu.Unlock()
	i := sort.Search(len(w.marks), func(i int) bool { return w.marks[i].at >= start })
	lo, hi = w.logSize, w.logSize
	if i < len(w.marks) {
		lo = w.marks[i].off
	}
	if end <= 0 {
		return lo, hi, true
	}
	j := sort.Search(len(w.marks), func(i int) bool { return w.marks[i].at > end })
	if j < len(w.marks) {
		return lo, max(lo, w.marks[j].off), false
	}
	return lo, hi, time.Now().UnixNano() <= end
}

// drainLogs waits, briefly, until the output the workers of a job have
// written has been passed on: until their pipes, and their capture pipes,
// hold no unread bytes and no line is half handled. A task's bytes are in
// one of them before it replies, so a driver that asks at its end gets
// all its workers' output.
func (r *Raylet) drainLogs(jobID string) {
	r.mu.Lock()
	var ws []*workerProc
	for _, w := range r.workers {
		if w.job == jobID {
			ws = append(ws, w)
		}
	}
	r.mu.Unlock()
	deadline := time.Now().Add(500 * time.Millisecond)
	for _, w := range ws {
		for time.Now().Before(deadline) {
			pr := w.logPipe.Load()
			if pr == nil {
				break
			}
			if w.captured() > 0 {
				time.Sleep(time.Millisecond) // the worker passes them on
				continue
			}
			n, err := pr.unread()
			before := w.logLines.Load()
			if err != nil || n == 0 {
				// Let a line already read finish its way out.
				time.Sleep(time.Millisecond)
				if w.logLines.Load() == before {
					break
				}
				continue
			}
			pr.poke()
			time.Sleep(time.Millisecond) // the copier is reading
		}
	}
}

// serveFlushOutput answers a worker's FlushOutput once flushOutput has
// returned, off the worker's read loop.
func (r *Raylet) serveFlushOutput(ctx context.Context, _ *pb.Empty, reply func(*pb.Empty, error)) {
	w, _ := rpc.ConnOf(ctx).Value.(*workerProc)
	if w == nil {
		reply(nil, errors.New("raylet: FlushOutput is for a registered worker"))
		return
	}
	go func() {
		r.flushOutput(w)
		reply(&pb.Empty{}, nil)
	}()
}

// flushWait bounds how long a worker's reply waits for what its task
// printed to be shown (flushOutput): a driver that does not read its
// connection holds no task's result for longer.
const flushWait = time.Second

// flushOutput returns once what worker w has written to its pipe so far
// has been shown: the copier has passed on every whole line of it, and
// the driver it goes to has printed them. A worker whose task printed
// asks for it before it replies (FlushOutput), so that a task's lines
// come out before the driver goes on after its Get; the lines travel
// raylet to driver, the reply worker to owner, and only this orders them.
func (r *Raylet) flushOutput(w *workerProc) {
	pr := w.logPipe.Load()
	if pr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, flushWait)
	defer cancel()
	select {
	case <-pr.caughtUp():
	case <-ctx.Done():
		return
	}
	r.mu.Lock()
	j := r.jobs[w.job]
	r.mu.Unlock()
	if w.job == "" || j == nil || !j.logs || j.conn == nil {
		return // the copier printed the lines itself, or sends them nowhere
	}
	// The driver handles the lines sent before this, in order, before it
	// answers: once it has, they are on its output.
	_ = j.conn.Call(ctx, rpc.MLog, &pb.LogLines{}, &pb.Empty{})
}
