package testcluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"google.golang.org/protobuf/proto"
)

// envValue is the value of name in env (KEY=VALUE lines), or "".
func envValue(env, name string) string {
	for _, l := range strings.Split(env, "\n") {
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			return v
		}
	}
	return ""
}

// apiDo sends a request to the head's API server with the bearer token
// (if any) and returns the status and body.
func apiDo(t *testing.T, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestJobCredentials: a job's processes hold their job's credential, not
// the cluster token; with it, a job runs its work and reads the cluster's
// state, but may not register nodes, start or submit other jobs, nor kill
// another job's actor.
func TestJobCredentials(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/jobcred")
	c := Start(t, rayo, 1)
	b := c.AddNode(1)
	intruder := pki.JobCredential(c.Token, "intruder")

	t.Run("WorkersPrintNoClusterToken", func(t *testing.T) {
		workersPrintNoClusterToken(t, c, b, driver)
	})
	t.Run("SubmittedJobPrintsNoClusterToken", func(t *testing.T) {
		submittedJobPrintsNoClusterToken(t, c)
	})
	t.Run("RefusedTheClustersMethods", func(t *testing.T) {
		refusedTheClustersMethods(t, c, intruder)
	})
	t.Run("CannotKillAnotherJobsActor", func(t *testing.T) {
		cannotKillAnotherJobsActor(t, c, b, driver, intruder)
	})
}

// workersPrintNoClusterToken checks that a worker's environment holds its
// job's credential, not the cluster token.
func workersPrintNoClusterToken(t *testing.T, c *Cluster, b *Node, driver string) {
	t.Helper()
	kv := run(t, c.Head, driver, "env", b.ID())
	raw, err := base64.StdEncoding.DecodeString(kv["worker_env"])
	if err != nil || len(raw) == 0 {
		t.Fatalf("worker_env %q: %v", kv["worker_env"], err)
	}
	env := string(raw)
	if strings.Contains(env, c.Token) {
		t.Fatalf("a worker's environment holds the cluster token:\n%s", env)
	}
	cred := envValue(env, "RAYO_TOKEN")
	job, err := pki.VerifyJobCredential(c.Token, cred)
	if err != nil || job != envValue(env, "RAYO_JOB") {
		t.Fatalf("the worker's RAYO_TOKEN %q: job %q, %v; want the credential of its job %q", cred, job, err, envValue(env, "RAYO_JOB"))
	}
}

// submittedJobPrintsNoClusterToken checks that a submitted job's
// entrypoint holds a job's credential, not the cluster token, and that
// this credential neither submits nor stops jobs.
func submittedJobPrintsNoClusterToken(t *testing.T, c *Cluster) {
	t.Helper()
	api := c.Dashboard() + "/api/jobs/"
	code, body := apiDo(t, "POST", api, c.Token, []byte(`{"entrypoint": "env"}`))
	if code != http.StatusOK {
		t.Fatalf("submit: %d %s", code, body)
	}
	var sub struct {
		SubmissionID string `json:"submission_id"`
	}
	if err := json.Unmarshal(body, &sub); err != nil || sub.SubmissionID == "" {
		t.Fatalf("submit answered %s: %v", body, err)
	}
	code, out := apiDo(t, "GET", api+sub.SubmissionID+"/logs?follow=1", c.Token, nil)
	if code != http.StatusOK || !strings.Contains(string(out), "PATH=") {
		t.Fatalf("logs: %d %s", code, out)
	}
	if strings.Contains(string(out), c.Token) {
		t.Fatalf("the job printed the cluster token:\n%s", out)
	}
	cred := envValue(string(out), "RAYO_TOKEN")
	if _, err := pki.VerifyJobCredential(c.Token, cred); err != nil {
		t.Fatalf("the entrypoint's RAYO_TOKEN %q: %v", cred, err)
	}
	// What it printed does not submit (or stop) jobs.
	if code, body := apiDo(t, "POST", api, cred, []byte(`{"entrypoint": "true"}`)); code != http.StatusForbidden {
		t.Fatalf("a submission with a job's credential: %d %s; want 403", code, body)
	}
	if code, body := apiDo(t, "POST", api+sub.SubmissionID+"/stop", cred, nil); code != http.StatusForbidden {
		t.Fatalf("a stop with a job's credential: %d %s; want 403", code, body)
	}
}

// refusedTheClustersMethods checks that a job's credential reads the nodes
// at the control store but may not call its cluster-only methods, nor
// register another job at a raylet.
func refusedTheClustersMethods(t *testing.T, c *Cluster, intruder string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := rpc.DialTLS(ctx, "tcp:"+c.Addr, intruder, c.TLS(), nil)
	if err != nil {
		t.Fatalf("a job's credential at the control store: %v", err)
	}
	defer conn.Close()
	var nodes pb.NodeList
	if err := conn.Call(ctx, rpc.MListNodes, &pb.Empty{}, &nodes); err != nil || len(nodes.Nodes) != 2 {
		t.Fatalf("a job's credential reads the nodes: %v %v", len(nodes.Nodes), err)
	}
	for m, req := range map[rpc.Method]proto.Message{
		rpc.MRegisterNode: &pb.NodeInfo{NodeId: []byte("0123456789abcdef"), Address: "127.0.0.1:1"},
		rpc.MJobStarted:   &pb.JobInfo{JobId: "other"},
		rpc.MHeartbeat:    &pb.Heartbeat{},
	} {
		err := conn.Call(ctx, m, req, &pb.Status{})
		var re *rpc.RemoteError
		if !errors.As(err, &re) || !strings.Contains(re.Msg, rpc.ErrClusterOnly.Error()) {
			t.Errorf("%s with a job's credential: %v; want %v", m, err, rpc.ErrClusterOnly)
		}
	}
	// At a raylet: no job but its own.
	var raylet string
	for _, n := range nodes.Nodes {
		if n.State == "ALIVE" && n.Address != "" {
			raylet = n.Address
		}
	}
	rc, err := rpc.DialTLS(ctx, "tcp:"+raylet, intruder, c.TLS(), nil)
	if err != nil {
		t.Fatalf("a job's credential at a raylet: %v", err)
	}
	defer rc.Close()
	err = rc.Call(ctx, rpc.MRegisterJob, &pb.JobInfo{JobId: "someone-else", Exe: "/bin/true"}, &pb.Status{})
	if err == nil || !strings.Contains(err.Error(), "may not register job") {
		t.Errorf("registering another job at a raylet: %v", err)
	}
}

// cannotKillAnotherJobsActor checks that another job's credential (and the
// cluster token) cannot kill a job's actor, while its own job's
// credential can.
func cannotKillAnotherJobsActor(t *testing.T, c *Cluster, b *Node, driver, intruder string) {
	t.Helper()
	d := start(t, c.Head, driver, "actor", b.ID())
	d.until(t, "ready", 60*time.Second)
	job := d.kv["job"]
	// The API server asks the driver, which does not take the
	// cluster token, for its objects with a credential it does take.
	var objs list
	getJSON(t, c.Dashboard()+"/api/v0/objects", &objs)
	for _, w := range objs.Warnings {
		if strings.Contains(w, job) {
			t.Errorf("the API server could not ask the driver of job %s: %s", job, w)
		}
	}
	r := &pb.ActorNameReply{}
	gcsCall(t, c, rpc.MLookupActorName, &pb.ActorName{Namespace: "jobcred", Name: "victim"}, r)
	_, tcp, _ := rpc.SplitEndpoint(r.Actor.GetWorkerAddr())
	if tcp == "" {
		t.Fatalf("the actor's record has no TCP address: %v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The cluster token does not open a job's worker.
	if conn, err := rpc.DialTLS(ctx, "tcp:"+tcp, c.Token, c.TLS(), nil); !errors.Is(err, rpc.ErrBadToken) {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("the cluster token at a job's worker: %v; want %v", err, rpc.ErrBadToken)
	}
	kill := func(cred string) error { return killActorAt(ctx, c, tcp, r.Actor.GetActorId(), cred) }
	var re *rpc.RemoteError
	if err := kill(intruder); !errors.As(err, &re) {
		t.Fatalf("another job's kill: %v; want the worker still answering", err)
	}
	if _, err := d.stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	if got := d.until(t, "after", 60*time.Second); got != "2" {
		t.Fatalf("the actor after another job's kill: %q; want 2", got)
	}
	// Its own job's credential kills it: the refusal above was the
	// credential's, not a kill that does nothing.
	if err := kill(pki.JobCredential(c.Token, job)); errors.As(err, &re) || err == nil {
		t.Fatalf("its own job's kill: %v; want the worker gone", err)
	}
}

// killActorAt asks the worker at tcp, with the credential cred, to kill
// the actor actorID, and returns how a later call on the same connection
// ended.
func killActorAt(ctx context.Context, c *Cluster, tcp string, actorID []byte, cred string) error {
	conn, err := rpc.DialTLS(ctx, "tcp:"+tcp, cred, c.TLS(), nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Notify(rpc.MKillActor, &pb.ActorAddrRequest{ActorId: actorID}); err != nil {
		return err
	}
	// Frames are served in order: the answer to this one comes
	// after the kill was served (or the connection breaks with
	// the worker).
	return conn.Call(ctx, rpc.MListNodes, &pb.Empty{}, &pb.NodeList{})
}
