package raylet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func nameReply(a *pb.ActorName, err error) *pb.ActorNameReply {
	if err != nil {
		return &pb.ActorNameReply{Error: err.Error()}
	}
	return &pb.ActorNameReply{Actor: a}
}

// RegisterActorName names an actor in the control store.
func (r *Raylet) RegisterActorName(ctx context.Context, a *pb.ActorName) error {
	return r.cfg.Cluster.RegisterActorName(ctx, a)
}

// LookupActorName finds a named actor in the control store.
func (r *Raylet) LookupActorName(ctx context.Context, namespace, name string) (*pb.ActorName, error) {
	return r.cfg.Cluster.LookupActorName(ctx, namespace, name)
}

// job is a driver's program whose workers this node runs.
type job struct {
	id     string
	exe    string
	args   []string
	env    []string
	conn   *rpc.Conn // to the driver
	logs   bool      // send worker output to the driver
	remote bool      // its driver runs on another node
	pid    int       // its driver's process, when it runs on this node
	start  time.Time
	done   bool // its driver said it is leaving (MJobDone, from Shutdown): a clean end
}

// RegisterJob lets a driver on this node run its workers here.
func (r *Raylet) registerJob(c *rpc.Conn, info *pb.JobInfo) error {
	if info.JobId == "" || info.Exe == "" {
		return errors.New("raylet: a job needs an ID and an executable")
	}
	if _, err := os.Stat(info.Exe); err != nil {
		return fmt.Errorf("raylet: job executable: %w", err)
	}
	// Other nodes run the job's workers too: they fetch its executable
	// from the control store.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	info.NodeId = r.nodeID[:]
	err := r.cfg.Cluster.StartJob(ctx, info)
	cancel()
	if err != nil {
		return fmt.Errorf("raylet: start job: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs[info.JobId] != nil {
		return fmt.Errorf("raylet: job %q exists", info.JobId)
	}
	j := &job{id: info.JobId, exe: info.Exe, args: info.Args, env: info.Env, conn: c, logs: info.LogToDriver,
		pid: c.PeerPID(), start: time.Now()}
	r.jobs[j.id] = j
	c.Value = j
	r.log.Info("job started", "job", j.id, "exe", j.exe)
	return nil
}

// endJobLocked stops the workers of a job whose driver has gone.
func (r *Raylet) endJobLocked(j *job) {
	delete(r.jobs, j.id)
	if j.remote && j.conn != nil {
		_ = j.conn.Close()
	}
	if !j.remote {
		r.cfg.Cluster.EndJob(r.jobEnd(j))
	}
	for _, w := range r.workers {
		if w.job == j.id && (w.lease == nil || !w.lease.detached) {
			r.stopWorkerLocked(w)
		}
	}
	r.log.Info("job ended", "job", j.id)
}

// jobEnd says how a job whose driver runs here ended: SUCCEEDED when the
// driver called Shutdown before it left, FAILED otherwise (it was killed,
// or crashed, or returned without Shutdown).
func (r *Raylet) jobEnd(j *job) *pb.JobRequest {
	if j.done {
		return &pb.JobRequest{JobId: j.id, Status: gcs.JobSucceeded}
	}
	return &pb.JobRequest{JobId: j.id, Status: gcs.JobFailed,
		Message: fmt.Sprintf("the driver died: pid %d on node %s exited without rayo.Shutdown (killed or crashed)", j.pid, r.nodeID.Name())}
}

// ActorAlive records where a detached actor runs.
func (r *Raylet) ActorAlive(actorID []byte, workerAddr string) {
	r.cfg.Cluster.ActorAlive(actorID, workerAddr)
}
