package dashboard

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// The logs endpoint: a worker's log, or one task attempt's part of it.

// lastRun is the latest attempt of the task of hex ID id that ran on a
// worker.
func (s *Server) lastRun(ctx context.Context, id string) (*pb.TaskRecord, error) {
	b, err := hex.DecodeString(id)
	if err != nil {
		return nil, fmt.Errorf("%w: bad task ID %q", errBadLogQuery, id)
	}
	l, err := s.cfg.Source.Tasks(ctx, &pb.StateQuery{Id: b})
	if err != nil {
		return nil, err
	}
	var best *pb.TaskRecord
	for _, t := range l.Tasks {
		if t.Task.WorkerPid != 0 && (best == nil || t.Task.Attempt > best.Task.Attempt) {
			best = t
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: task %s has not run on a worker", errNoWorker, id)
	}
	return best, nil
}

// findWorker resolves the log request's query to a node and a worker's
// pid, and for a task, the task.
func (s *Server) findWorker(ctx context.Context, q map[string]string) (*pb.NodeInfo, int32, *pb.TaskRecord, error) {
	nodes, err := s.cfg.Source.Nodes(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	byName := func(name string) *pb.NodeInfo {
		for _, n := range nodes {
			if nodeName(n.NodeId) == name {
				return n
			}
		}
		return nil
	}
	switch {
	case q["pid"] != "":
		pid, err := strconv.ParseInt(q["pid"], 10, 32) // pids are 32 bits: no wrapping to another's
		if err != nil || pid <= 0 {
			return nil, 0, nil, fmt.Errorf("%w: bad pid %q", errBadLogQuery, q["pid"])
		}
		if q["node_id"] == "" && len(nodes) == 1 {
			return nodes[0], int32(pid), nil, nil
		}
		n := byName(q["node_id"])
		if n == nil {
			return nil, 0, nil, fmt.Errorf("%w: no node %q", errNoWorker, q["node_id"])
		}
		return n, int32(pid), nil, nil
	case q["worker_id"] != "":
		_, stats, _, err := s.nodesWithStats(ctx)
		if err != nil {
			return nil, 0, nil, err
		}
		for i, st := range stats {
			if st == nil {
				continue
			}
			for _, w := range st.Workers {
				if hexOf(w.WorkerId) == q["worker_id"] {
					return nodes[i], w.Pid, nil, nil
				}
			}
		}
		return nil, 0, nil, fmt.Errorf("%w: no worker %s", errNoWorker, q["worker_id"])
	case q["actor_id"] != "":
		b, err := hex.DecodeString(q["actor_id"])
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%w: bad actor ID %q", errBadLogQuery, q["actor_id"])
		}
		l, err := s.cfg.Source.Actors(ctx, &pb.StateQuery{Id: b})
		if err != nil {
			return nil, 0, nil, err
		}
		if len(l.Actors) == 0 || l.Actors[0].Actor.Pid == 0 {
			return nil, 0, nil, fmt.Errorf("%w: no actor %s with a worker", errNoWorker, q["actor_id"])
		}
		a := l.Actors[0].Actor
		if n := byName(a.NodeId); n != nil {
			return n, a.Pid, nil, nil
		}
		return nil, 0, nil, fmt.Errorf("%w: actor %s ran on node %s, which is unknown", errNoWorker, q["actor_id"], a.NodeId)
	case q["task_id"] != "":
		t, err := s.lastRun(ctx, q["task_id"])
		if err != nil {
			return nil, 0, nil, err
		}
		if n := byName(t.Task.NodeId); n != nil {
			return n, t.Task.WorkerPid, t, nil
		}
		return nil, 0, nil, fmt.Errorf("%w: task %s ran on node %s, which is unknown", errNoWorker, q["task_id"], t.Task.NodeId)
	}
	return nil, 0, nil, fmt.Errorf("%w: name a worker with pid (and node_id), worker_id, actor_id or task_id", errBadLogQuery)
}

var (
	errBadLogQuery = errors.New("bad log query")
	errNoWorker    = errors.New("unknown worker")
)

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	q := map[string]string{}
	for _, k := range []string{"node_id", "pid", "worker_id", "actor_id", "task_id", "lines", "follow"} {
		q[k] = r.URL.Query().Get(k)
	}
	lines := 0
	if q["lines"] != "" {
		var err error
		if lines, err = strconv.Atoi(q["lines"]); err != nil || lines < 0 {
			fail(w, http.StatusBadRequest, fmt.Errorf("bad lines %q", q["lines"]))
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	n, pid, task, err := s.findWorker(ctx, q)
	if err != nil {
		cancel()
		switch {
		case errors.Is(err, errBadLogQuery):
			fail(w, http.StatusBadRequest, err)
		case errors.Is(err, errNoWorker):
			fail(w, http.StatusNotFound, err)
		default:
			sourceErr(w, err)
		}
		return
	}
	l := &logRead{s: s, w: w, n: n, pid: pid, task: task}
	l.start, l.end = taskWindow(task)
	ok := l.copy(ctx, lines)
	cancel()
	if ok && (q["follow"] == "1" || q["follow"] == "true") {
		l.follow(r.Context())
	}
}

// logRead passes one worker's log (a task's part of it) to a client.
type logRead struct {
	s          *Server
	w          http.ResponseWriter
	n          *pb.NodeInfo
	pid        int32
	task       *pb.TaskRecord // nil: the whole log
	start, end int64          // the task's window (taskWindow)
	pos        int64          // how much of the log has been read
}

// request asks for the next piece of the log, waiting up to waitMs for
// one: of a task, its own lines (the raylet finds them by the mark its
// worker printed as the attempt started, or else by when they came).
func (l *logRead) request(waitMs int64) *pb.LogRequest {
	req := &pb.LogRequest{Pid: l.pid, Offset: l.pos, Max: maxLogRead, WaitMs: waitMs, StartUnixNs: l.start, EndUnixNs: l.end}
	if l.task != nil {
		req.TaskId, req.Attempt = l.task.Task.TaskId, l.task.Task.Attempt
	}
	return req
}

// copy reads the log in pieces and passes each on as it comes; with
// lines, it keeps only the tail and writes that at the end: a large log
// never sits in memory whole. It reports whether the client has it all.
func (l *logRead) copy(ctx context.Context, lines int) bool {
	var tail []byte
	for {
		b, err := l.s.cfg.Source.ReadLog(ctx, l.n, l.request(0))
		if err != nil {
			if l.pos == 0 {
				fail(l.w, http.StatusNotFound, fmt.Errorf("log of worker %d on node %s: %w", l.pid, nodeName(l.n.NodeId), err))
			} else {
				fmt.Fprintf(l.w, "\n[rayo: the log stopped: %v]\n", err)
			}
			return false
		}
		if l.pos == 0 {
			l.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			l.w.Header().Set("X-Content-Type-Options", "nosniff")
		}
		l.pos += int64(len(b))
		if lines > 0 {
			tail = append([]byte(nil), lastLines(append(tail, b...), lines)...) // the tail alone
		} else if _, err := l.w.Write(b); err != nil {
			return false
		}
		if len(b) < maxLogRead {
			break
		}
	}
	if lines > 0 {
		_, _ = l.w.Write(tail)
	}
	return true
}

// follow passes on what the worker writes next until the client leaves,
// the log fails, or the task (when there is one) has ended and all its
// lines are out.
func (l *logRead) follow(ctx context.Context) {
	flusher, _ := l.w.(http.Flusher)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := l.s.cfg.Source.ReadLog(rctx, l.n, l.request(2000))
		if err == nil && len(b) == 0 && l.task != nil {
			if l.end != 0 {
				cancel()
				return // the task ended and all its lines are out
			}
			l.refreshEnd(rctx) // still running? its end closes the log
		}
		cancel()
		if ctx.Err() != nil {
			return // the client left
		}
		if err != nil {
			fmt.Fprintf(l.w, "\n[rayo: the log stopped: %v]\n", err)
			return
		}
		l.pos += int64(len(b))
		if _, err := l.w.Write(b); err != nil {
			return
		}
	}
}

// refreshEnd learns whether the task's attempt has ended since.
func (l *logRead) refreshEnd(ctx context.Context) {
	tl, err := l.s.cfg.Source.Tasks(ctx, &pb.StateQuery{Id: l.task.Task.TaskId})
	if err != nil {
		return
	}
	for _, t := range tl.Tasks {
		if t.Task.Attempt == l.task.Task.Attempt {
			_, l.end = taskWindow(t)
		}
	}
}

// taskWindow is when a task attempt ran, for its part of its worker's log
// (end 0: it runs still; 0, 0: not a task, the whole log).
func taskWindow(t *pb.TaskRecord) (start, end int64) {
	if t == nil {
		return 0, 0
	}
	times := t.StateTimesUnixNs
	start = times[tasktable.TaskRunning]
	if start == 0 {
		start = times[tasktable.TaskSubmitted]
	}
	if start == 0 {
		start = 1 // no time known: from the start of the log
	}
	end = times[tasktable.TaskFinished]
	if end == 0 {
		end = times[tasktable.TaskFailed]
	}
	return start, end
}

// lastLines is the end of b holding its last n lines.
func lastLines(b []byte, n int) []byte {
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
