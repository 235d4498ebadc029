package core

import (
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Tasks killed by a node's memory monitor: the raylet tells the lease's
// owner (rpc.MWorkerOOM) before it kills the worker, and the owner retries
// the task with backoff, counting against its retries; past them the task
// fails with ErrOutOfMemory.

// OOM retry backoff: the first retry waits oomBackoffBase, each next one
// twice as long, up to oomBackoffMax.
const (
	oomBackoffBase = 100 * time.Millisecond
	oomBackoffMax  = 10 * time.Second
)

// oomBackoff is the pause before the retry that follows the n-th kill
// (n >= 1).
func oomBackoff(n int) time.Duration {
	d := oomBackoffBase
	for i := 1; i < n && d < oomBackoffMax; i++ {
		d *= 2
	}
	if d > oomBackoffMax {
		d = oomBackoffMax
	}
	return d
}

// WorkerKilled takes the news that a node's memory monitor is about to
// kill the worker of one of this process's leases: the tasks it runs fail
// with the cause when its connection breaks.
func (rt *Runtime) WorkerKilled(k *pb.WorkerKilled) {
	rt.tasks.workerKilled(k)
}

// workerKilled does the work of Runtime.WorkerKilled.
func (ts *taskSubmitter) workerKilled(k *pb.WorkerKilled) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, q := range ts.queues {
		for _, l := range q.leases {
			if l.addr == k.WorkerAddr {
				l.oom = k.Message
			}
		}
	}
}

// oomFailedLocked handles a task whose worker the memory monitor killed:
// it is queued again after a backoff while it has retries left, and fails
// with ErrOutOfMemory otherwise. It reports false if the task is not such
// a task. The caller holds tasks.mu and objs.mu.
func (ts *taskSubmitter) oomFailedLocked(t *task, l *lease, after *actions) bool {
	if l.oom == "" || t.cancelled {
		return false
	}
	t.oomKills++
	e := sysErr(t.spec.Name, KindOutOfMemory, l.oom)
	if t.retries == 0 || ts.rt.closed.Load() {
		e.Message = fmt.Sprintf("killed by the memory monitor (%d attempts, %d of them killed so): %s", t.spec.Attempt+1, t.oomKills, l.oom)
		ts.finishLocked(t, nil, e, after)
		return true
	}
	ts.rt.taskEventLocked(t, tasktable.TaskFailed, e)
	if t.retries > 0 {
		t.retries--
	}
	t.spec.Attempt++
	t.lease = nil
	ts.rt.taskEventLocked(t, tasktable.TaskPendingNode, nil)
	q := t.q
	ts.rt.after("retry after oom", oomBackoff(t.oomKills), func() {
		var after actions
		ts.mu.Lock()
		if t.finished || ts.rt.closed.Load() {
			ts.mu.Unlock()
			return
		}
		q.tasks = append([]*task{t}, q.tasks...)
		ts.dispatchLocked(q, &after)
		ts.mu.Unlock()
		after.run(ts.rt)
	})
	return true
}
