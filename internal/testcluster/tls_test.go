package testcluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// TestTLSCluster: a cluster started with rayo start's defaults speaks TLS
// on every TCP link: the head mints its CA, a node on another "machine"
// (state folder) joins with the join token, and tasks and objects cross
// between them; peers in clear are refused by the control store and by
// the raylets.
func TestTLSCluster(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := Start(t, rayo, 1)
	join := c.JoinToken()
	fp, secret, err := pki.ParseToken(join)
	if err != nil || fp == "" || secret != c.Token {
		t.Fatalf("the head's join token %q: %v", join, err)
	}
	ca, err := pki.LoadCA(node.CADir(c.Head.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	if pki.Fingerprint(ca.Cert) != fp {
		t.Fatal("the join token pins another CA than the head's")
	}
	if st, err := os.Stat(filepath.Join(node.CADir(c.Head.StateDir), pki.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the CA's key: %v %v", err, st)
	}
	b := c.AddNode(1) // joins with the join token (see Node.Env)
	head := c.Head

	kv := run(t, head, driver, "affinity", b.ID())
	if kv["ran"] != b.ID() {
		t.Fatalf("a task for b ran on %q", kv["ran"])
	}
	kv = run(t, head, driver, "objects", head.ID(), b.ID())
	want := fmtF(float64(8<<20) * 0.5)
	if kv["remote_sum"] != want || kv["driver_sum"] != want || kv["put_sum"] != fmtF(2<<20) {
		t.Fatalf("objects across nodes over TLS: %v", kv)
	}

	// In clear, the control store and b's raylet refuse.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{c.Addr}
	for _, n := range nodes {
		if n.State == "ALIVE" {
			addrs = append(addrs, n.Address)
		}
	}
	if len(addrs) != 3 {
		t.Fatalf("want the control store and two raylets, have %v", addrs)
	}
	for _, a := range addrs {
		if _, err := rpc.DialTLS(ctx, "tcp:"+a, c.Token, nil, nil); !errors.Is(err, rpc.ErrTLSRequired) {
			t.Errorf("in clear to %s: %v, want ErrTLSRequired", a, err)
		}
		conn, err := rpc.DialTLS(ctx, "tcp:"+a, c.Token, c.TLS(), nil)
		if err != nil {
			t.Errorf("over TLS to %s: %v", a, err)
			continue
		}
		if st := conn.TLSState(); st == nil || len(st.PeerCertificates) == 0 {
			t.Errorf("%s: no TLS state", a)
		}
		_ = conn.Close()
	}
}

// joinFails starts a node with args and env that must fail to join; it
// returns what the node said.
func joinFails(t *testing.T, c *Cluster, env []string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	argv := append([]string{"start", "--address", c.Addr, "--num-cpus", "1", "--block"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Rayo, argv...)
	cmd.Env = append(append(os.Environ(), "RAYO_STATE_DIR="+dir), env...)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("rayo start %v joined (or hung): %v\n%s", args, err, out)
	}
	return string(out)
}

// TestTLSJoinRefused: a node joins only with the right CA pinned and TLS
// on; each refusal says why.
func TestTLSJoinRefused(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	c := Start(t, rayo, 1)
	_, secret, _ := pki.ParseToken(c.JoinToken())

	// Another CA's fingerprint: refused in the TLS handshake, before the
	// secret is sent.
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	out := joinFails(t, c, []string{"RAYO_TOKEN=" + pki.JoinToken(other.Cert, secret)})
	if !strings.Contains(out, "fingerprint") {
		t.Errorf("a wrong CA fingerprint: %s", out)
	}
	// The plain secret, on a machine without the head's CA: nothing to pin.
	out = joinFails(t, c, []string{"RAYO_TOKEN=" + secret})
	if !strings.Contains(out, "join token") {
		t.Errorf("no fingerprint: %s", out)
	}
	// A malformed join token.
	out = joinFails(t, c, []string{"RAYO_TOKEN=K10abc::" + secret})
	if !strings.Contains(out, "K10<64 hex digits") {
		t.Errorf("a malformed join token: %s", out)
	}
	// TLS off against a cluster with TLS: the control store says so.
	out = joinFails(t, c, []string{"RAYO_TOKEN=" + secret}, "--tls=false")
	if !strings.Contains(out, "TLS only") {
		t.Errorf("a node in clear: %s", out)
	}
	// A listener in clear posing as the control store records what the
	// joining node writes: a TLS ClientHello, never the secret.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		var all []byte
		defer func() { got <- all }()
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, _ = io.ReadAll(nc)
	}()
	fake := &Cluster{t: t, Rayo: c.Rayo, Addr: ln.Addr().String()}
	out = joinFails(t, fake, []string{"RAYO_TOKEN=" + c.JoinToken()})
	_ = ln.Close()
	rec := <-got
	if len(rec) == 0 || rec[0] != 0x16 || bytes.Contains(rec, []byte(secret)) {
		t.Fatalf("a listener in clear received %q (the node said %s)", rec, out)
	}
	// Half an operator's PKI.
	out = joinFails(t, c, nil, "--tls-cert", "/nonexistent.crt")
	if !strings.Contains(out, "all three") {
		t.Errorf("half an operator's PKI: %s", out)
	}
	c.WaitAlive(1, 10*time.Second)
}

// TestTLSOperatorPKI: nodes started with an operator's certificates
// (--tls-cert, --tls-key, --tls-ca) form a cluster without the head's CA;
// --tls=false turns TLS off for the whole cluster.
func TestTLSOperatorPKI(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	ca, err := pki.NewCA("operator CA")
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	files := func(name string) []string {
		creds, err := ca.Issue(name, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(caDir, name)
		if err := creds.Save(dir); err != nil {
			t.Fatal(err)
		}
		return []string{"--tls-cert", filepath.Join(dir, pki.CertFile), "--tls-key", filepath.Join(dir, pki.KeyFile), "--tls-ca", filepath.Join(dir, pki.CACertFile)}
	}
	c := Start(t, rayo, 1, files("head")...)
	if c.JoinToken() != "" {
		t.Fatal("a head with an operator's PKI made a join token")
	}
	if _, err := os.Stat(node.CADir(c.Head.StateDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a head with an operator's PKI minted a CA: %v", err)
	}
	b := c.AddNode(1, files("b")...)
	driver := Build(t, "./internal/testcluster/testdata/mn")
	if kv := run(t, c.Head, driver, "affinity", b.ID()); kv["ran"] != b.ID() {
		t.Fatalf("a task for b ran on %q", kv["ran"])
	}
	// A driver with certificate files of its own (rayo.TLSFiles).
	d := files("driver")
	cmd := c.Head.Command(driver, "affinity", b.ID())
	cmd.Env = append(cmd.Env, "MN_TLS_FILES="+d[1]+","+d[3]+","+d[5])
	out, err := cmd.CombinedOutput()
	if kv := parse(string(out)); err != nil || kv["ran"] != b.ID() {
		t.Fatalf("a driver with rayo.TLSFiles: %v\n%s", err, out)
	}
	cmd = c.Head.Command(driver, "affinity", b.ID())
	cmd.Env = append(cmd.Env, "MN_TLS_FILES="+d[1]+",/nonexistent.key,"+d[5])
	out, err = cmd.CombinedOutput()
	if kv := parse(string(out)); err == nil || !strings.Contains(kv["init_err"], "TLSFiles") {
		t.Fatalf("rayo.TLSFiles with a missing key: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := rpc.DialTLS(ctx, "tcp:"+c.Addr, c.Token, nil, nil); !errors.Is(err, rpc.ErrTLSRequired) {
		t.Fatalf("in clear to an operator-PKI cluster: %v", err)
	}

	plain := Start(t, rayo, 1, "--tls=false")
	if plain.TLS() != nil {
		t.Fatal("a cluster started with --tls=false has TLS credentials")
	}
	pb := plain.AddNode(1, "--tls=false")
	if kv := run(t, plain.Head, driver, "affinity", pb.ID()); kv["ran"] != pb.ID() {
		t.Fatalf("without TLS, a task for b ran on %q", kv["ran"])
	}
}

// TestTLSCAInRedis: with Redis, the CA is kept with the control store's
// tables, so a head started again on another machine (another state
// folder) keeps the CA, which the join tokens nodes hold pin.
func TestTLSCAInRedis(t *testing.T) {
	redis := redistest.Start(t)
	rayo := Build(t, "./cmd/rayo")
	first := Start(t, rayo, 1, "--redis-address", redis)
	join := first.JoinToken()
	if join == "" {
		t.Fatal("no join token")
	}
	first.Head.Kill()
	second := Start(t, rayo, 1, "--redis-address", redis)
	if second.Head.StateDir == first.Head.StateDir {
		t.Fatal("the second head shares the first's state folder")
	}
	fp1, _, _ := pki.ParseToken(join)
	fp2, _, err := pki.ParseToken(second.JoinToken())
	if err != nil || fp2 != fp1 {
		t.Fatalf("the second head's CA %q (%v), want the first's %q", fp2, err, fp1)
	}
	// A node pinning the first head's CA joins the second.
	want := second.alive() + 1
	n := second.start("late", nil, []string{"start", "--address", second.Addr, "--host", "127.0.0.1", "--num-cpus", "1"})
	second.WaitAlive(want, 30*time.Second)
	if !strings.Contains(n.Output(), "joined the cluster") {
		t.Fatalf("the node said: %s", n.Output())
	}
}
