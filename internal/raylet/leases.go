package raylet

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Leases: requests for workers by resource shape, granted in order, and
// the workers given back.

type leaseRec struct {
	id        uint64
	dedicated bool   // hosts an actor: the worker is not reused
	detached  bool   // hosts a detached actor: it outlives its job
	actorID   []byte // the actor, when dedicated
	w         *workerProc
	res       []*pb.Resource
	gpus      []int32   // the GPUs it holds...
	gpuShare  float64   // ...and how much of each
	lent      bool      // the worker is blocked in Get and lent its CPU
	owner     *rpc.Conn // nil for the in-process owner
	// For the memory monitor: when it was granted, to whom, and whether
	// its owner retries its tasks.
	granted   time.Time
	ownerAddr string
	retriable bool
	taskName  string
	// dedicated: the actor as its owner describes it, and when this node
	// saw it ALIVE (its worker's event), for a restarted control store
	// (see HostedActors).
	actor   *pb.ActorName
	aliveAt int64
}

type leaseReq struct {
	job   string
	req   *pb.RequestLease
	res   []*pb.Resource
	owner *rpc.Conn
	cb    func(*pb.LeaseReply, error)
	at    time.Time // when it arrived, for the scheduling latency
}

// RequestLease asks for a worker; cb runs when one is granted or the
// request can never be.
func (r *Raylet) RequestLease(req *pb.RequestLease, cb func(*pb.LeaseReply, error)) {
	r.requestLease(req, nil, cb)
}

func (r *Raylet) requestLease(req *pb.RequestLease, owner *rpc.Conn, cb func(*pb.LeaseReply, error)) {
	r.placeRequest(req, owner, cb, false)
}

func (r *Raylet) placeRequest(req *pb.RequestLease, owner *rpc.Conn, cb func(*pb.LeaseReply, error), final bool) {
	var after []func()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cb(nil, ErrClosed)
		return
	}
	if err := r.fencedLocked(); err != nil {
		r.mu.Unlock()
		cb(nil, err)
		return
	}
	if err := r.ownerDeadLocked(req); err != nil {
		r.mu.Unlock()
		cb(nil, err)
		return
	}
	spill, err := r.placeLocked(req, final)
	switch {
	case errors.Is(err, errWaitView):
		r.viewWait = append(r.viewWait, &leaseReq{req: req, owner: owner, cb: cb})
		r.mu.Unlock()
		return
	case errors.Is(err, errAwaitNode):
		if owner == nil || owner.Err() == nil {
			r.awaitNode = append(r.awaitNode, &leaseReq{job: req.JobId, req: req, res: req.Resources, owner: owner, cb: cb, at: time.Now()})
		}
		r.mu.Unlock()
		return
	case errors.Is(err, errGroupMissing):
		r.mu.Unlock()
		cb(&pb.LeaseReply{GroupMissing: true}, nil)
		return
	case err != nil || spill != "":
		reply := &pb.LeaseReply{SpillTo: spill}
		if err != nil {
			reply.Error = err.Error()
		}
		r.mu.Unlock()
		cb(reply, nil)
		return
	}
	lr := &leaseReq{job: req.JobId, req: req, res: req.Resources, owner: owner, cb: cb, at: time.Now()}
	if req.JobId != "" && r.jobs[req.JobId] == nil {
		if r.alone {
			r.mu.Unlock()
			cb(nil, fmt.Errorf("raylet: unknown job %q", req.JobId))
			return
		}
		r.loadJobLocked(req.JobId, lr) // a job of a driver on another node
		r.mu.Unlock()
		return
	}
	r.pending = append(r.pending, lr)
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
}

func describe(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%g", k, v))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

func (r *Raylet) fitsLocked(res []*pb.Resource) bool {
	for _, x := range res {
		if r.avail[x.Name] < x.Quantity-1e-9 {
			return false
		}
	}
	return true
}

// grantLocked grants waiting requests, in order, while resources and idle
// workers allow, and starts workers for those that have resources but no
// worker yet.
func (r *Raylet) grantLocked(after *[]func()) {
	if r.closed {
		return
	}
	waiting, waitingJob := 0, ""
	for len(r.pending) > 0 {
		req := r.pending[0]
		if req.owner != nil && req.owner.Err() != nil {
			r.pending = r.pending[1:] // its owner is gone
			continue
		}
		if !r.fitsLocked(req.res) {
			break
		}
		i := r.idleForLocked(req.job)
		if i < 0 {
			waitingJob = req.job
			for _, p := range r.pending {
				if p.job == waitingJob {
					waiting++
				}
			}
			break
		}
		gpus, share, ok := r.gpus.take(gpuDemand(req.res))
		if !ok {
			break // enough GPU in all, but shares of it spread over GPUs: wait for some to free
		}
		w := r.idle[i]
		r.idle = append(r.idle[:i], r.idle[i+1:]...)
		r.pending = r.pending[1:]
		for _, x := range req.res {
			r.avail[x.Name] -= x.Quantity
		}
		r.nextLease++
		l := &leaseRec{id: r.nextLease, w: w, res: req.res, owner: req.owner, dedicated: req.req.Dedicated, detached: req.req.Detached, actorID: req.req.ActorId,
			gpus: gpus, gpuShare: share, granted: time.Now(), ownerAddr: req.req.OwnerAddr, retriable: req.req.Retriable, taskName: req.req.TaskName,
			actor: req.req.Actor}
		w.lease = l
		r.leases[l.id] = l
		r.log.Debug("lease granted", "lease", l.id, "pid", w.pid, "remote_owner", req.owner != nil, "avail", r.avail[CPU])
		reply := &pb.LeaseReply{LeaseId: l.id, WorkerId: w.id[:], WorkerAddr: w.addr, NodeId: r.nodeID[:], GpuIds: gpus, WorkerPid: int32(w.pid)}
		if !req.at.IsZero() {
			r.metrics.SchedulingLatency.Observe(time.Since(req.at).Seconds())
		}
		cb := req.cb
		*after = append(*after, func() { cb(reply, nil) })
	}
	// Keep the pool full when actors take workers out of it.
	for r.cfg.WorkerExe != "" && r.countIdleLocked("")+r.startingJ[""] < int(r.cfg.NumCPUs) && r.dedicatedLocked() > 0 {
		if err := r.startWorkerLocked(""); err != nil {
			break
		}
	}
	// Start workers for requests that have resources but no idle worker,
	// bounded by what could run at once.
	for r.startingJ[waitingJob] < waiting && r.starting < int(r.cfg.NumCPUs)+4 {
		if err := r.startWorkerLocked(waitingJob); err != nil {
			r.log.Error("cannot start a worker", "job", waitingJob, "err", err)
			if r.startingJ[waitingJob] == 0 && r.idleForLocked(waitingJob) < 0 {
				// Nothing will come to serve the job's requests: say so
				// rather than leave them hanging.
				kept := r.pending[:0]
				for _, p := range r.pending {
					if p.job != waitingJob {
						kept = append(kept, p)
						continue
					}
					cb, msg := p.cb, "cannot start a worker process: "+err.Error()
					*after = append(*after, func() { cb(&pb.LeaseReply{Failure: msg}, nil) })
				}
				r.pending = kept
			}
			break
		}
	}
}

// idleForLocked finds the most recently idle worker of job, or -1.
func (r *Raylet) idleForLocked(job string) int {
	for i := len(r.idle) - 1; i >= 0; i-- {
		if r.idle[i].job == job {
			return i
		}
	}
	return -1
}

func (r *Raylet) countIdleLocked(job string) int {
	n := 0
	for _, w := range r.idle {
		if w.job == job {
			n++
		}
	}
	return n
}

// ReturnLease gives a worker back.
func (r *Raylet) ReturnLease(req *pb.ReturnLease) {
	var after []func()
	r.mu.Lock()
	if l := r.leases[req.LeaseId]; l != nil {
		r.returnLocked(l, req.WorkerFailed)
	}
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
}

func (r *Raylet) dedicatedLocked() int {
	n := 0
	for _, l := range r.leases {
		if l.dedicated {
			n++
		}
	}
	return n
}

func (r *Raylet) releaseLocked(l *leaseRec) {
	if l.dedicated {
		r.cfg.Cluster.ActorGone(l.actorID) // the actor is gone with its worker
	}
	r.log.Debug("lease released", "lease", l.id, "pid", l.w.pid, "lent", l.lent)
	delete(r.leases, l.id)
	l.w.lease = nil
	r.checkDrainedLocked()
	r.gpus.give(l.gpus, l.gpuShare)
	l.gpus = nil
	for _, x := range l.res {
		if l.lent && x.Name == CPU {
			continue // already given back while the worker was blocked
		}
		if _, ok := r.total[x.Name]; !ok {
			continue // its placement group was removed
		}
		r.avail[x.Name] += x.Quantity
	}
}

func (r *Raylet) returnLocked(l *leaseRec, failed bool) {
	r.releaseLocked(l)
	w := l.w
	if w.dead {
		return
	}
	if failed || l.dedicated {
		r.workerGoneLocked(w) // the owner could not reach it
		return
	}
	w.idleSince = time.Now()
	r.idle = append(r.idle, w)
}

// SetBlocked lends a blocked worker's CPU to other tasks, or takes it back.
func (r *Raylet) SetBlocked(wid ids.WorkerID, blocked bool) {
	var after []func()
	r.mu.Lock()
	w := r.workers[wid]
	if w != nil && w.lease != nil && w.lease.lent != blocked {
		l := w.lease
		l.lent = blocked
		r.log.Debug("blocked", "pid", w.pid, "blocked", blocked, "lease", l.id)
		for _, x := range l.res {
			if x.Name != CPU {
				continue
			}
			if blocked {
				r.avail[CPU] += x.Quantity
			} else {
				r.avail[CPU] -= x.Quantity // may go below zero for a while
			}
		}
		r.grantLocked(&after)
	}
	r.mu.Unlock()
	run(after)
}

// StartingWorkers reports whether the raylet is starting a worker that
// has not registered yet.
func (r *Raylet) StartingWorkers() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starting > 0
}
