package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

const testSecret = "s3cret-token-0123456789abcdef"

// testCA mints a CA and credentials of it: the head's (which can sign)
// and a node's.
func testCA(t *testing.T) (ca *pki.CA, head, member *pki.Credentials) {
	t.Helper()
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	head, err = ca.Issue("head", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	head.Issuer = ca
	member, err = ca.Issue("member", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return ca, head, member
}

// tlsServer serves echo on loopback TCP over TLS with creds, wanting the
// token testSecret.
func tlsServer(t *testing.T, creds *pki.Credentials) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	srv.UseTLS(NewTLS(creds))
	srv.RequireToken(testSecret)
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func callEcho(ctx context.Context, c *Conn, msg string) (string, error) {
	resp := &pb.Status{}
	err := c.Call(ctx, mEcho, &pb.Status{Error: msg}, resp)
	return resp.Error, err
}

// TestTLSMutual: two members of a cluster talk TLS 1.3, each seeing the
// other's certificate.
func TestTLSMutual(t *testing.T) {
	_, head, member := testCA(t)
	addr := tlsServer(t, head)
	ctx := ctx5(t)
	c, err := DialTLS(ctx, "tcp:"+addr, testSecret, NewTLS(member), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := callEcho(ctx, c, "hi"); err != nil || got != "hi" {
		t.Fatalf("echo over TLS: %q %v", got, err)
	}
	st := c.TLSState()
	if st == nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("TLS state %+v, want TLS 1.3", st)
	}
	if len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "head" {
		t.Fatalf("the server's certificate: %v", st.PeerCertificates)
	}
	// The wrong token is refused inside TLS too.
	if _, err := DialTLS(ctx, "tcp:"+addr, "wrong", NewTLS(member), nil); !errors.Is(err, ErrBadToken) {
		t.Fatalf("wrong token over TLS: %v, want ErrBadToken", err)
	}
}

// TestTLSJoinToken: the join token's secret is accepted wherever the plain
// secret is, and a plain secret by a server set up with the join token.
func TestTLSJoinToken(t *testing.T) {
	ca, head, member := testCA(t)
	addr := tlsServer(t, head)
	ctx := ctx5(t)
	c, err := DialTLS(ctx, "tcp:"+addr, pki.JoinToken(ca.Cert, testSecret), NewTLS(member), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
}

// TestTLSEnroll: a node with the join token gets a certificate, then
// serves and dials with it; a wrong secret gets none.
func TestTLSEnroll(t *testing.T) {
	ca, head, _ := testCA(t)
	addr := tlsServer(t, head)
	ctx := ctx5(t)
	creds, err := Enroll(ctx, addr, pki.JoinToken(ca.Cert, testSecret), "node1", []string{"127.0.0.1", "node1.example"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := creds.Cert.Leaf
	if leaf.Subject.CommonName != "node1" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "node1.example" {
		t.Fatalf("enrolled certificate: %v %v", leaf.Subject, leaf.DNSNames)
	}
	if pki.Fingerprint(creds.CA) != pki.Fingerprint(ca.Cert) {
		t.Fatal("enrolled with another CA")
	}
	c, err := DialTLS(ctx, "tcp:"+addr, testSecret, NewTLS(creds), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := callEcho(ctx, c, "enrolled"); err != nil || got != "enrolled" {
		t.Fatalf("echo with the enrolled certificate: %q %v", got, err)
	}
	_ = c.Close()
	// The enrolled node serves other members.
	addr2 := tlsServer(t, creds)
	c, err = DialTLS(ctx, "tcp:"+addr2, testSecret, NewTLS(head), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	if _, err := Enroll(ctx, addr, pki.JoinToken(ca.Cert, "not-the-secret"), "x", nil); !errors.Is(err, ErrBadToken) {
		t.Fatalf("enroll with a wrong secret: %v, want ErrBadToken", err)
	}
	if _, err := Enroll(ctx, addr, testSecret, "x", nil); err == nil || !strings.Contains(err.Error(), "join token") {
		t.Fatalf("enroll with a plain secret: %v, want a word about the join token", err)
	}
}

// TestTLSEnrollOnly: a peer without a certificate may say the token and
// enroll, nothing else; a server that does not enroll refuses it in the
// handshake.
func TestTLSEnrollOnly(t *testing.T) {
	ca, head, member := testCA(t)
	addr := tlsServer(t, head)
	ctx := ctx5(t)
	noCert := &TLS{Client: pki.PinnedConfig(pki.Fingerprint(ca.Cert))}
	c, err := DialTLS(ctx, "tcp:"+addr, testSecret, noCert, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := callEcho(ctx, c, "hi"); err == nil || !strings.Contains(err.Error(), "may only enroll") {
		t.Fatalf("a call without a certificate: %v, want refused", err)
	}

	addr2 := tlsServer(t, member) // cannot sign: wants a certificate
	c2, err := DialTLS(ctx, "tcp:"+addr2, testSecret, noCert, nil)
	if err == nil {
		_, err = callEcho(ctx, c2, "hi")
		_ = c2.Close()
	}
	if err == nil {
		t.Fatal("a peer without a certificate was served by a server that does not enroll")
	}
}

// recorder is a TCP listener that keeps every byte it receives, answering
// nothing (or, with cfg, after a TLS handshake, keeping what the peer
// sends inside TLS).
type recorder struct {
	ln  net.Listener
	mu  sync.Mutex
	got bytes.Buffer
	hs  []error // handshake errors, with cfg
	wg  sync.WaitGroup
}

func newRecorder(t *testing.T, cfg *tls.Config) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer nc.Close()
				_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
				var src io.Reader = nc
				if cfg != nil {
					tc := tls.Server(nc, cfg)
					if err := tc.Handshake(); err != nil {
						r.mu.Lock()
						r.hs = append(r.hs, err)
						r.mu.Unlock()
						return
					}
					src = tc
				}
				buf := make([]byte, 4096)
				for {
					n, err := src.Read(buf)
					r.mu.Lock()
					r.got.Write(buf[:n])
					r.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.got.Bytes()...)
}

// TestTokenNeverInClear: with TLS on, what a client writes to a TCP
// socket never holds the token: not to a listener in clear (which sees a
// TLS ClientHello and nothing more), not to a TLS server of another CA.
func TestTokenNeverInClear(t *testing.T) {
	ca, _, member := testCA(t)
	ctx := ctx5(t)
	join := pki.JoinToken(ca.Cert, testSecret)

	plain := newRecorder(t, nil)
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err := DialTLS(short, "tcp:"+plain.addr(), testSecret, NewTLS(member), nil)
	cancel()
	if err == nil {
		t.Fatal("a TLS dial to a listener in clear succeeded")
	}
	short, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = Enroll(short, plain.addr(), join, "n", nil)
	cancel()
	if err == nil {
		t.Fatal("enrolling with a listener in clear succeeded")
	}
	got := plain.bytes()
	if len(got) == 0 || got[0] != tlsRecordHandshake {
		t.Fatalf("the listener in clear got %q, want a TLS ClientHello", got)
	}
	if bytes.Contains(got, []byte(testSecret)) {
		t.Fatal("the token was written to a socket in clear")
	}

	// A TLS server of another CA: the handshake fails on the client's
	// check, before a byte of the token is sent inside TLS.
	_, other, _ := testCA(t)
	mitm := newRecorder(t, other.ServerConfig(true))
	_, err = Enroll(ctx, mitm.addr(), join, "n", nil)
	if !errors.Is(err, pki.ErrFingerprint) {
		t.Fatalf("enroll with a server of another CA: %v, want ErrFingerprint", err)
	}
	_, err = DialTLS(ctx, "tcp:"+mitm.addr(), testSecret, NewTLS(member), nil)
	if err == nil || !strings.Contains(err.Error(), "not of this cluster") {
		t.Fatalf("dial to a server of another CA: %v, want refused", err)
	}
	if got := mitm.bytes(); bytes.Contains(got, []byte(testSecret)) || len(got) != 0 {
		t.Fatalf("a server of another CA received %q inside TLS", got)
	}
}

// TestTLSRefusesClear: a TLS listener answers a peer in clear with a clear
// error, and a TLS client cannot talk to a server in clear.
func TestTLSRefusesClear(t *testing.T) {
	_, head, member := testCA(t)
	addr := tlsServer(t, head)
	ctx := ctx5(t)
	_, err := DialTLS(ctx, "tcp:"+addr, testSecret, nil, nil)
	if !errors.Is(err, ErrTLSRequired) {
		t.Fatalf("a peer in clear: %v, want ErrTLSRequired", err)
	}

	_, plainAddr := tokenServer(t) // wants "s3cret", in clear
	_, err = DialTLS(ctx, "tcp:"+plainAddr, "s3cret", NewTLS(member), nil)
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("TLS to a server in clear: %v, want a failed handshake", err)
	}
}

// TestTLS12Refused: a client that offers at most TLS 1.2 is refused, and
// so is a server that offers at most TLS 1.2.
func TestTLS12Refused(t *testing.T) {
	_, head, member := testCA(t)
	addr := tlsServer(t, head)
	cfg := NewTLS(member).Client.Clone()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		_ = nc.Close()
		t.Fatal("a TLS 1.2 client was served")
	}
	if !strings.Contains(err.Error(), "version") {
		t.Fatalf("TLS 1.2 client: %v, want a protocol version error", err)
	}

	old := head.ServerConfig(false)
	old.MinVersion, old.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	rec := newRecorder(t, old)
	_, err = DialTLS(ctx5(t), "tcp:"+rec.addr(), testSecret, NewTLS(member), nil)
	if err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("a TLS 1.2 server: %v, want a protocol version error", err)
	}
}

// TestTLSHandshakeDeadline: a peer that opens a connection and never
// finishes the handshake is closed after the handshake timeout.
func TestTLSHandshakeDeadline(t *testing.T) {
	_, head, _ := testCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	srv.UseTLS(NewTLS(head))
	srv.RequireToken(testSecret)
	srv.SetHandshakeTimeout(200 * time.Millisecond)
	defer srv.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte{tlsRecordHandshake, 3, 1}); err != nil { // a record begun
		t.Fatal(err)
	}
	closedByPeer(t, nc, 5*time.Second)
}

// TestDefaultTLS: a server on TCP made after SetDefaultTLS speaks TLS, and
// DialToken uses it; Unix sockets stay in clear.
func TestDefaultTLS(t *testing.T) {
	_, head, _ := testCA(t)
	SetDefaultTLS(NewTLS(head))
	defer SetDefaultTLS(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	srv.RequireToken(testSecret)
	defer srv.Close()
	ctx := ctx5(t)
	c, err := DialToken(ctx, "tcp:"+ln.Addr().String(), testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.TLSState(); st == nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("DialToken with a default TLS: state %v", st)
	}
	_ = c.Close()
	if _, err := DialTLS(ctx, "tcp:"+ln.Addr().String(), testSecret, nil, nil); !errors.Is(err, ErrTLSRequired) {
		t.Fatalf("in clear to a default-TLS server: %v", err)
	}

	path := t.TempDir() + "/s.sock"
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	us := NewServer(ul, func(*Conn) Handler { return echo }, nil)
	defer us.Close()
	uc, err := Dial(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if got, err := callEcho(ctx, uc, "unix"); err != nil || got != "unix" || uc.TLSState() != nil {
		t.Fatalf("Unix socket: %q %v %v", got, err, uc.TLSState())
	}
}

// TestTLSCloseDuringHandshake: Close does not wait for the handshakes in
// progress to time out; it ends them.
func TestTLSCloseDuringHandshake(t *testing.T) {
	_, head, _ := testCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	srv.UseTLS(NewTLS(head))
	srv.RequireToken(testSecret)
	srv.SetHandshakeTimeout(time.Minute)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte{tlsRecordHandshake, 3, 1}); err != nil {
		t.Fatal(err)
	}
	// Wait until the server holds the connection in its handshake.
	deadline := time.Now().Add(5 * time.Second)
	for {
		srv.mu.Lock()
		n := len(srv.handshaking)
		srv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server never began the handshake")
		}
		time.Sleep(time.Millisecond) // polling the accept loop
	}
	start := time.Now()
	_ = srv.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a handshake in progress", d)
	}
	closedByPeer(t, nc, 5*time.Second)
}
