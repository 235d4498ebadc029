package testcluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// writeCA writes a CA's certificate and key to files of dir (mode 0400, as
// a Secret volume holds them) and returns their paths.
func writeCA(t *testing.T, ca *pki.CA, dir string) (certFile, keyFile string) {
	t.Helper()
	b, err := ca.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "-----BEGIN EC PRIVATE KEY")
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, b[:i], 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, b[i:], 0o400); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLSGivenCA: a head given the cluster's CA as files (--tls-ca and
// --tls-ca-key, as the Kubernetes operator mounts its Secret) signs the
// nodes' certificates with it rather than minting one; a node joins with
// the plain secret and the CA certificate pinned (--tls-ca alone), and
// tasks cross; in clear, the control store refuses. Each misuse of the
// flags is refused with a reason.
func TestTLSGivenCA(t *testing.T) {
	rayo := Build(t, "./cmd/rayo")
	ca, err := pki.NewCA("operator's cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey := writeCA(t, ca, t.TempDir())
	c := Start(t, rayo, 1, "--tls-ca", caCert, "--tls-ca-key", caKey)
	checkHeadHoldsCA(t, c, ca)
	// The plain secret on the command line wins over the join token that
	// Node.Env puts in RAYO_TOKEN: the node pins the CA file, not a token.
	b := c.AddNode(1, "--token", c.Token, "--tls-ca", caCert)
	if !strings.Contains(b.Output(), "joined") {
		t.Fatalf("b: %s", b.Output())
	}
	checkSignedBy(t, b, ca)
	driver := Build(t, "./internal/testcluster/testdata/mn")
	if kv := run(t, c.Head, driver, "affinity", b.ID()); kv["ran"] != b.ID() {
		t.Fatalf("a task for b ran on %q", kv["ran"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := rpc.DialTLS(ctx, "tcp:"+c.Addr, c.Token, nil, nil); !errors.Is(err, rpc.ErrTLSRequired) {
		t.Fatalf("in clear to the control store: %v, want ErrTLSRequired", err)
	}

	// Misuses, each refused with its reason.
	checkGivenCAMisuses(t, c, rayo, caCert, caKey)
	c.WaitAlive(2, 10*time.Second)
}

// checkHeadHoldsCA checks that the head's join token pins the given CA,
// that its CA folder holds it (the key's copy mode 0600), and that it
// wrote TLS credentials.
func checkHeadHoldsCA(t *testing.T, c *Cluster, ca *pki.CA) {
	t.Helper()
	fp, _, err := pki.ParseToken(c.JoinToken())
	if err != nil || fp != pki.Fingerprint(ca.Cert) {
		t.Fatalf("the head's join token %q pins another CA than the given one (%v)", c.JoinToken(), err)
	}
	if kept, err := pki.LoadCA(node.CADir(c.Head.StateDir)); err != nil || pki.Fingerprint(kept.Cert) != fp {
		t.Fatalf("the head's CA folder does not hold the given CA: %v", err)
	}
	if st, err := os.Stat(filepath.Join(node.CADir(c.Head.StateDir), pki.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the copy of the CA's key: %v %v", err, st)
	}
	head := c.TLS()
	if head == nil {
		t.Fatal("the head wrote no TLS credentials")
	}
}

// checkSignedBy checks that node b's certificate is signed by ca.
func checkSignedBy(t *testing.T, b *Node, ca *pki.CA) {
	t.Helper()
	rec, err := node.ReadCluster(b.StateDir)
	if err != nil || rec.TLSDir == "" {
		t.Fatalf("b's record: %+v %v", rec, err)
	}
	creds, err := pki.LoadDir(rec.TLSDir, "")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := creds.Cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("b's certificate is not signed by the given CA: %v", err)
	}
}

// checkGivenCAMisuses checks that each misuse of --tls-ca and --tls-ca-key,
// on a joining node or on a head, is refused with its reason.
func checkGivenCAMisuses(t *testing.T, c *Cluster, rayo, caCert, caKey string) {
	t.Helper()
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := writeCA(t, other, t.TempDir())
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"another CA pinned", []string{"--token", c.Token, "--tls-ca", otherCert}, "fingerprint"},
		{"a join token against the CA file", []string{"--token", c.JoinToken(), "--tls-ca", otherCert}, "pins the CA"},
		{"a CA key on a joining node", []string{"--token", c.Token, "--tls-ca", caCert, "--tls-ca-key", caKey}, "--tls-ca-key is for the head"},
		{"a CA's key as its certificate", []string{"--token", c.Token, "--tls-ca", caKey}, "no certificate"},
	} {
		if out := joinFails(t, c, nil, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("%s: %s, want %q", tc.name, out, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a key that is not the certificate's", []string{"--tls-ca", caCert, "--tls-ca-key", otherKey}, "private key does not match"},
		{"--tls-ca-key without --tls-ca", []string{"--tls-ca-key", caKey}, "--tls-ca-key is for the head"},
		{"--tls-ca alone on a head", []string{"--tls-ca", caCert}, "give its key with --tls-ca-key"},
		{"a missing key file", []string{"--tls-ca", caCert, "--tls-ca-key", "/nonexistent.key"}, "no such file"},
		{"a join token of another CA", []string{"--tls-ca", caCert, "--tls-ca-key", caKey, "--token", pki.JoinToken(other.Cert, c.Token)}, "the token pins the CA"},
	} {
		if out := headFails(t, rayo, tc.args...); !strings.Contains(out, tc.want) {
			t.Errorf("%s: %s, want %q", tc.name, out, tc.want)
		}
	}
}

// headFails starts a head with args that must fail to start; it returns
// what the head said.
func headFails(t *testing.T, rayo string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	argv := append([]string{"start", "--head", "--port", fmt.Sprint(FreePort(t)), "--dashboard-port", "0", "--num-cpus", "1", "--block"}, args...)
	cmd := exec.CommandContext(ctx, rayo, argv...)
	cmd.Env = append(os.Environ(), "RAYO_STATE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("rayo start --head %v started (or hung): %v\n%s", args, err, out)
	}
	return string(out)
}
