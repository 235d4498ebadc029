package testcluster

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/stateapi"
)

// outerIP is an IPv4 address of this machine beyond loopback.
func outerIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Fatal("this machine has no IPv4 address beyond loopback, which the test needs")
	return ""
}

// TestAPIServerTLS: an API server beyond loopback serves HTTPS with a
// certificate of the cluster's CA; rayo commands verify it and read
// through it; plain HTTP is not served; reads need the cluster token or a
// job's credential.
func TestAPIServerTLS(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	c := Start(t, rayo, 1, "--dashboard-host", outerIP(t))
	base := c.Dashboard()
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("the API server beyond loopback is at %q; want https", base)
	}
	out, err := c.Head.Command(rayo, "list", "nodes").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALIVE") {
		t.Fatalf("rayo list nodes over HTTPS: %v\n%s", err, out)
	}

	rec, err := node.ReadCluster(c.Head.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(token string) error {
		sc := &stateapi.Client{Base: base, Token: token}
		if err := sc.TrustCAFile(filepath.Join(rec.TLSDir, pki.CACertFile)); err != nil {
			t.Fatal(err)
		}
		_, err := sc.Get(ctx, "/api/v0/nodes", nil)
		return err
	}
	if err := read(c.Token); err != nil {
		t.Fatalf("a read with the cluster token: %v", err)
	}
	if err := read(pki.JobCredential(c.Token, "reader")); err != nil {
		t.Fatalf("a read with a job's credential: %v", err)
	}
	if err := read(""); err == nil || !strings.Contains(err.Error(), "needs the cluster token") {
		t.Fatalf("a read without the token: %v; want it refused", err)
	}
	plain := "http://" + strings.TrimPrefix(base, "https://") + "/api/v0/healthz"
	if resp, err := http.Get(plain); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the API server answered plain HTTP")
		}
	}
}
