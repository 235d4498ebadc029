package rpc

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

const clusterSecret = "0123456789abcdef0123456789abcdef"

// roleServer serves a Mux on a socket that wants token: GetJob answers
// with the job the peer authenticated as, ReadChunk (a cluster method)
// with bytes.
func roleServer(t *testing.T, token string, jobKey ...string) string {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "role.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	mx := NewMux("test")
	HandleAsync(mx, GetJob, func(ctx context.Context, _ *pb.JobRequest, reply func(*pb.JobInfo, error)) {
		reply(&pb.JobInfo{JobId: "job:" + JobOf(ctx)}, nil)
	})
	var chunks atomic.Int64
	HandleRaw(mx, ReadChunk, func(_ context.Context, req *pb.ReadChunk, reply func([]byte, error)) {
		chunks.Add(1)
		reply(make([]byte, req.Length), nil)
	})
	srv := NewServer(ln, func(*Conn) Handler { return mx }, nil)
	srv.RequireToken(token)
	for _, k := range jobKey {
		srv.TrustJobKey(k)
	}
	t.Cleanup(func() {
		_ = srv.Close()
		if t.Failed() {
			t.Logf("ReadChunk served %d times", chunks.Load())
		}
	})
	return addr
}

func whoAmI(t *testing.T, c *Conn) string {
	t.Helper()
	var info pb.JobInfo
	if err := c.Call(ctx5(t), MGetJob, &pb.JobRequest{}, &info); err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	return info.JobId
}

// TestJobCredentialRole: a daemon's server takes the cluster's secret
// (the cluster's role) and any job credential made with it (that job's
// role, refused the cluster's methods); a forged one is refused at Hello.
func TestJobCredentialRole(t *testing.T) {
	addr := roleServer(t, clusterSecret)
	ctx := ctx5(t)

	cluster, err := DialToken(ctx, addr, clusterSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if who := whoAmI(t, cluster); who != "job:" {
		t.Errorf("with the secret, the peer is %q; want the cluster (job:)", who)
	}
	if _, err := cluster.CallRaw(ctx, MReadChunk, &pb.ReadChunk{Length: 4}); err != nil {
		t.Errorf("the cluster's secret was refused a cluster method: %v", err)
	}

	job, err := DialToken(ctx, addr, pki.JobCredential(clusterSecret, "j7"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	if who := whoAmI(t, job); who != "job:j7" {
		t.Errorf("with job j7's credential, the peer is %q", who)
	}
	_, err = job.CallRaw(ctx, MReadChunk, &pb.ReadChunk{Length: 4})
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(re.Msg, ErrClusterOnly.Error()) || !strings.Contains(re.Msg, "j7") {
		t.Errorf("a job credential's ReadChunk: %v; want %v naming the job", err, ErrClusterOnly)
	}
	// The connection stays usable for what the job may do.
	if who := whoAmI(t, job); who != "job:j7" {
		t.Errorf("after the refusal: %q", who)
	}

	for name, bad := range map[string]string{
		"another cluster's credential": pki.JobCredential("ffffffffffffffffffffffffffffffff", "j7"),
		"a forged signature":           "rayojob1.j7." + strings.Repeat("A", 86),
	} {
		if c, err := DialToken(ctx, addr, bad, nil); !errors.Is(err, ErrBadToken) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: %v; want %v", name, err, ErrBadToken)
		}
	}
}

// TestJobProcessTakesItsOwnCredentialOnly: the server of a job's process,
// which holds its job's credential and not the secret, takes that
// credential only: not another job's, and not the secret (a peer holding
// the secret presents the job's credential, which it can make).
func TestJobProcessTakesItsOwnCredentialOnly(t *testing.T) {
	own := pki.JobCredential(clusterSecret, "j1")
	addr := roleServer(t, own)
	ctx := ctx5(t)
	c, err := DialToken(ctx, addr, own, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if who := whoAmI(t, c); who != "job:j1" {
		t.Errorf("the peer is %q; want job:j1", who)
	}
	for name, bad := range map[string]string{
		"another job's credential": pki.JobCredential(clusterSecret, "j2"),
		"the cluster's secret":     clusterSecret,
	} {
		if c, err := DialToken(ctx, addr, bad, nil); !errors.Is(err, ErrBadToken) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: %v; want %v", name, err, ErrBadToken)
		}
	}
}

func TestClusterMethodsAreMarked(t *testing.T) {
	for _, m := range []Method{MRegisterNode, MHeartbeat, MJobStarted, MJobEnded, MReadChunk, MPublishView} {
		if !ClusterOnly(m) {
			t.Errorf("%s is not marked as the cluster's", m)
		}
	}
	for _, m := range []Method{MRequestLease, MPushTask, MGetObject, MListJobs, MRegisterJob, MLog} {
		if ClusterOnly(m) {
			t.Errorf("%s, which jobs call, is marked as the cluster's", m)
		}
	}
}

// TestJobProcessTakesOtherJobsSignedCredentials: with the cluster's job
// key, a job's process takes another job's genuine credential, as that
// job (a caller of a named actor), and still refuses forged ones and the
// secret.
func TestJobProcessTakesOtherJobsSignedCredentials(t *testing.T) {
	addr := roleServer(t, pki.JobCredential(clusterSecret, "j1"), pki.JobKey(clusterSecret))
	ctx := ctx5(t)
	c, err := DialToken(ctx, addr, pki.JobCredential(clusterSecret, "j2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if who := whoAmI(t, c); who != "job:j2" {
		t.Errorf("the peer is %q; want job:j2", who)
	}
	for name, bad := range map[string]string{
		"another cluster's credential": pki.JobCredential("ffffffffffffffffffffffffffffffff", "j2"),
		"the cluster's secret":         clusterSecret,
	} {
		if c, err := DialToken(ctx, addr, bad, nil); !errors.Is(err, ErrBadToken) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: %v; want %v", name, err, ErrBadToken)
		}
	}
}
