package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ErrNoLocalNode refuses to join a driver to a cluster that has no node
// on its machine: a driver runs on a node of its cluster.
var ErrNoLocalNode = errors.New("a driver runs on a node of its cluster")

// JoinConfig describes how a driver joins a cluster started with rayo
// start.
type JoinConfig struct {
	// Address is the cluster's control store (HOST:PORT); "":
	// RAYO_ADDRESS, or the cluster this machine's node belongs to.
	Address string
	// Pushes serves what the node's raylet sends the driver (its workers'
	// output, and news for its runtime).
	Pushes rpc.Handler
	// TLSFiles, when set, are the certificate, key and CA files the driver
	// presents and trusts on its links to other nodes, instead of the
	// credentials of the node it runs on.
	TLSFiles []string
}

// Joined is a driver's place on a node of a cluster started with rayo
// start: its connection to the node's raylet, the node's store mapped,
// and its job's ID and session folder (job-<pid>-<id>, which holds its
// socket). The driver's runtime comes on top (see RegisterJob).
type Joined struct {
	Info    ClusterInfo          // the node's record (cluster.json)
	Conn    *rpc.Conn            // to the node's raylet
	Raylet  *rayletclient.Client // the driver's RayletClient, over Conn
	Arena   *objstore.Arena      // the node's store
	JobID   string
	Session string
}

// Join connects a driver to the raylet of the node it runs on, maps the
// node's store, makes the job's session folder (pruning those of drivers
// gone) and sets the driver's TLS credentials. The job starts with
// RegisterJob, once the driver serves.
func Join(ctx context.Context, cfg JoinConfig) (*Joined, error) {
	c, err := Resolve(cfg.Address, "")
	if err != nil {
		return nil, err
	}
	rec, err := ReadCluster(StateDir())
	if err != nil || rec.Address != c.Address || rec.RayletSocket == "" {
		return nil, fmt.Errorf("%w, and this machine has no node of %s (see rayo start)", ErrNoLocalNode, c.Address)
	}
	j := &Joined{Info: rec}
	if j.Conn, err = rpc.Dial(ctx, rec.RayletSocket, cfg.Pushes); err != nil {
		return nil, fmt.Errorf("cannot reach this node's raylet (is the cluster at %s running?): %w", c.Address, err)
	}
	j.Raylet = &rayletclient.Client{Conn: j.Conn}
	if j.Arena, err = objstore.OpenArena(fmt.Sprintf("/proc/%d/fd/%d", rec.RayletPID, rec.StoreFD)); err != nil {
		_ = j.Conn.Close()
		return nil, fmt.Errorf("map the node's object store: %w", err)
	}
	if j.JobID, j.Session, err = JobSession(StateDir()); err != nil {
		j.close()
		return nil, err
	}
	if err := driverTLS(cfg.TLSFiles, rec.TLSDir); err != nil {
		j.close()
		_ = os.RemoveAll(j.Session)
		return nil, err
	}
	return j, nil
}

// DriverRunning arms the driver's prefault window of the node's store,
// mapped while the driver exchanges no messages and calls (its runtime's
// count of calls, see core.Runtime.Calls) stands still.
func (j *Joined) DriverRunning(calls func() uint64) {
	prefaultStore(j.Arena, calls, nil)
}

// driverTLS sets the TLS of a driver joining a cluster: the files given,
// or else those of the node it runs on (tlsDir; "": TLS off).
func driverTLS(files []string, tlsDir string) error {
	if files == nil {
		return LoadTLS(tlsDir, "")
	}
	if len(files) != 3 || files[0] == "" || files[1] == "" || files[2] == "" {
		return errors.New("TLSFiles takes a certificate, its key and a CA file, all three")
	}
	creds, err := pki.Load(files[0], files[1], files[2])
	if err != nil {
		return fmt.Errorf("TLSFiles: %w", err)
	}
	rpc.SetDefaultTLS(rpc.NewTLS(creds))
	return nil
}

// DriverAddr is the socket the driver is to serve on.
func (j *Joined) DriverAddr() string { return filepath.Join(j.Session, "driver.sock") }

// RegisterJob starts the driver's job on the node: its workers run exe
// with args, and its output goes to the driver serving at driverAddr
// when logToDriver. A job submitted to the API server names its
// submission (jobs.EnvSubmissionID).
func (j *Joined) RegisterJob(ctx context.Context, exe string, args []string, logToDriver bool, driverAddr string) error {
	job := &pb.JobInfo{JobId: j.JobID, Exe: exe, Args: args, LogToDriver: logToDriver, DriverAddr: driverAddr,
		SubmissionId: os.Getenv(jobs.EnvSubmissionID)}
	if _, err := rpc.Call(ctx, j.Conn, rpc.RegisterJob, job); err != nil {
		return fmt.Errorf("start job: %w", err)
	}
	return nil
}

// JobDone lets the node pass on the last output of the job's workers,
// waiting at most 2 s. The driver's runtime is closed after.
func (j *Joined) JobDone() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = rpc.Call(ctx, j.Conn, rpc.JobDone, &pb.Empty{})
}

// Close leaves the node: the raylet ends the job, and its workers, when
// the connection closes. The store is unmapped and the session folder,
// which holds only the driver's socket, removed.
func (j *Joined) Close() {
	j.close()
	_ = os.RemoveAll(j.Session)
}

func (j *Joined) close() {
	_ = j.Conn.Close()
	_ = j.Arena.Close()
}
