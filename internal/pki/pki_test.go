package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCAPersists: the CA minted at the first start is the one found at
// the next, its key readable by its owner only.
func TestCAPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ca, minted, err := LoadOrCreateCA(dir)
	if err != nil || !minted {
		t.Fatalf("first start: %v minted=%v", err, minted)
	}
	again, minted, err := LoadOrCreateCA(dir)
	if err != nil || minted {
		t.Fatalf("second start: %v minted=%v", err, minted)
	}
	if Fingerprint(again.Cert) != Fingerprint(ca.Cert) {
		t.Fatal("the CA changed across starts")
	}
	for _, f := range []string{CAKeyFile, CACertFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("the folder has mode %v, want 0700", st.Mode().Perm())
	}
	if ca.Cert.PublicKeyAlgorithm.String() != "ECDSA" {
		t.Fatalf("CA key %v, want ECDSA", ca.Cert.PublicKeyAlgorithm)
	}
}

// TestCABadFiles: a CA folder whose files do not make a CA is an error,
// not a new CA that would split the cluster.
func TestCABadFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CACertFile), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateCA(dir); err == nil {
		t.Fatal("junk CA files were accepted")
	}
	// A node certificate is not a CA.
	ca, _ := NewCA("x")
	creds, err := ca.Issue("n", nil)
	if err != nil {
		t.Fatal(err)
	}
	nd := t.TempDir()
	if err := creds.Save(nd); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(nd, CertFile), filepath.Join(nd, CACertFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(nd, KeyFile), filepath.Join(nd, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(nd); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("a node certificate as CA: %v", err)
	}
}

// TestParseToken: join tokens and plain secrets, and the malformed.
func TestParseToken(t *testing.T) {
	ca, _ := NewCA("x")
	fp, sec, err := ParseToken(JoinToken(ca.Cert, "abc"))
	if err != nil || fp != Fingerprint(ca.Cert) || sec != "abc" {
		t.Fatalf("join token: %q %q %v", fp, sec, err)
	}
	if fp, sec, err := ParseToken("plain"); err != nil || fp != "" || sec != "plain" {
		t.Fatalf("plain secret: %q %q %v", fp, sec, err)
	}
	for _, bad := range []string{"K10", "K10abc::s", "K10" + strings.Repeat("a", 64), "K10" + strings.Repeat("a", 64) + "::", "K10" + strings.Repeat("z", 64) + "::s"} {
		if _, _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
	if Secret(JoinToken(ca.Cert, "abc")) != "abc" || Secret("abc") != "abc" {
		t.Fatal("Secret")
	}
}

// TestSignChecks: the CA signs only well-formed, self-signed ECDSA
// requests, and what it signs chains to it.
func TestSignChecks(t *testing.T) {
	ca, _ := NewCA("x")
	if _, err := ca.Sign([]byte("junk")); err == nil {
		t.Fatal("a junk request was signed")
	}
	if _, err := ca.Sign(make([]byte, maxRequest+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("an oversized request: %v", err)
	}
	key, _ := NewKey()
	req, err := NewRequest(key, "n", []string{"10.0.0.1", "host.example"})
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), req...)
	tampered[len(tampered)-5] ^= 0xff // the signature
	if _, err := ca.Sign(tampered); err == nil {
		t.Fatal("a request with a broken signature was signed")
	}
	der, err := ca.Sign(req)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := Assemble(key, der, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds.Cert.Leaf.IPAddresses) != 1 || creds.Cert.Leaf.DNSNames[0] != "host.example" {
		t.Fatalf("hosts: %v %v", creds.Cert.Leaf.IPAddresses, creds.Cert.Leaf.DNSNames)
	}
	other, _ := NewCA("y")
	if _, err := Assemble(key, der, other.Cert); err == nil {
		t.Fatal("a certificate was assembled with a CA that did not sign it")
	}
}

// TestSaveLoad: saved credentials load back, with the CA's key when the
// folder holds it; files of an operator's PKI load with Load, and a
// certificate of another CA is refused.
func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.Issue("head", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer == nil || Fingerprint(got.CA) != Fingerprint(ca.Cert) {
		t.Fatal("LoadDir lost the CA")
	}
	st, _ := os.Stat(filepath.Join(dir, KeyFile))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("node.key mode %v", st.Mode().Perm())
	}
	member := t.TempDir()
	if err := creds.Save(member); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadDir(member, ""); err != nil || got.Issuer != nil {
		t.Fatalf("a member's folder: %v issuer=%v", err, got.Issuer)
	}

	other := t.TempDir()
	if _, _, err := LoadOrCreateCA(other); err != nil {
		t.Fatal(err)
	}
	_, err = Load(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(other, CACertFile))
	if err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("a certificate of another CA: %v", err)
	}
	if _, err := Load(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	if _, err := Load(filepath.Join(dir, CertFile), filepath.Join(other, CAKeyFile), filepath.Join(dir, CACertFile)); err == nil {
		t.Fatal("a key of another certificate was accepted")
	}
}

// TestConfigsAreTLS13: every configuration wants TLS 1.3.
func TestConfigsAreTLS13(t *testing.T) {
	ca, _ := NewCA("x")
	creds, _ := ca.Issue("n", nil)
	for name, cfg := range map[string]*tls.Config{
		"server": creds.ServerConfig(false), "enroll": creds.ServerConfig(true),
		"client": creds.ClientConfig(), "pinned": PinnedConfig(Fingerprint(ca.Cert)),
	} {
		if cfg.MinVersion != tls.VersionTLS13 {
			t.Errorf("%s: MinVersion %x", name, cfg.MinVersion)
		}
	}
	if creds.ServerConfig(false).ClientAuth != tls.RequireAndVerifyClientCert {
		t.Error("a server that does not enroll must require client certificates")
	}
}

// TestCAMarshal: a CA kept with the control store's tables reads back
// whole; junk and a node certificate do not.
func TestCAMarshal(t *testing.T) {
	ca, _ := NewCA("x")
	b, err := ca.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCA(b)
	if err != nil || Fingerprint(got.Cert) != Fingerprint(ca.Cert) || !got.Key.Equal(ca.Key) {
		t.Fatalf("ParseCA: %v", err)
	}
	if _, err := ParseCA([]byte("junk")); err == nil {
		t.Fatal("junk parsed as a CA")
	}
	creds, _ := ca.Issue("n", nil)
	nodeCA := &CA{Cert: creds.Cert.Leaf, Key: creds.Cert.PrivateKey.(*ecdsa.PrivateKey)}
	nb, err := nodeCA.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(nb); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("a node certificate parsed as a CA: %v", err)
	}
}

// TestLoadCAFilesAndCert: a CA given as files (an operator's Secret) is
// read back as the one written; a certificate that is not a CA's, two
// certificates, a key that is not the certificate's, and missing files are
// refused, each saying why.
func TestLoadCAFilesAndCert(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("given")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ca.keyPEM()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.keyPEM()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("node", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.crt": PEM(ca.Cert), "ca.key": caKey, "other.key": otherKey,
		"leaf.crt": PEM(leaf.Cert.Leaf), "two.crt": PEM(ca.Cert, other.Cert), "empty.crt": nil,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	f := func(name string) string { return filepath.Join(dir, name) }

	got, err := LoadCAFiles(f("ca.crt"), f("ca.key"))
	if err != nil || Fingerprint(got.Cert) != Fingerprint(ca.Cert) || !got.Key.Equal(ca.Key) {
		t.Fatalf("LoadCAFiles: %v", err)
	}
	cert, err := LoadCACert(f("ca.crt"))
	if err != nil || Fingerprint(cert) != Fingerprint(ca.Cert) {
		t.Fatalf("LoadCACert: %v", err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"another CA's key", func() error { _, err := LoadCAFiles(f("ca.crt"), f("other.key")); return err }(), "private key does not match"},
		{"a node's certificate as the CA's", func() error { _, err := LoadCAFiles(f("leaf.crt"), f("ca.key")); return err }(), "private key does not match"},
		{"no key file", func() error { _, err := LoadCAFiles(f("ca.crt"), f("none.key")); return err }(), "the CA key"},
		{"no certificate file", func() error { _, err := LoadCAFiles(f("none.crt"), f("ca.key")); return err }(), "the CA certificate"},
		{"a node's certificate pinned", func() error { _, err := LoadCACert(f("leaf.crt")); return err }(), "want one CA certificate"},
		{"two certificates pinned", func() error { _, err := LoadCACert(f("two.crt")); return err }(), "have 2 certificates"},
		{"an empty file pinned", func() error { _, err := LoadCACert(f("empty.crt")); return err }(), "no certificate"},
		{"a key pinned", func() error { _, err := LoadCACert(f("ca.key")); return err }(), "no certificate"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, tc.err, tc.want)
		}
	}
}
