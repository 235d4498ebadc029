package dashboard

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAPIServerSpeaksHTTP1Only sends an HTTP/2 client's opening to the
// API server, as prior knowledge (h2c) and as an upgrade: the server must
// answer both in HTTP/1.1, so none of Go 1.26.8's HTTP/2 server flaws
// (GO-2026-6617, -6612, -6611, -6603) can be reached; and its protocol set
// must leave HTTP/2 out, so that TLS could not bring it in through ALPN.
func TestAPIServerSpeaksHTTP1Only(t *testing.T) {
	s, err := Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p := s.srv.Protocols; p == nil || p.HTTP2() || p.UnencryptedHTTP2() || !p.HTTP1() {
		t.Fatalf("protocols %v, want HTTP/1 alone", p)
	}
	for name, opening := range map[string]string{
		"prior knowledge": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"upgrade":         "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
	} {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(opening)); err != nil {
			t.Fatal(err)
		}
		status, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("%s: no answer: %v", name, err)
		}
		if !strings.HasPrefix(status, "HTTP/1.1 ") || strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("%s: answered %q, want an HTTP/1.1 status other than 101 Switching Protocols", name, status)
		}
	}
}

// TestAPIServerRefusesConnect sends CONNECT with a path to each kind of
// route: no 2xx may answer it, or Go 1.26.8 would go on reading the
// tunnelled bytes as requests (GO-2026-6613).
func TestAPIServerRefusesConnect(t *testing.T) {
	s, err := Listen("127.0.0.1:0", New(Config{Source: newFake(), UI: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, path := range []string{"/", "/metrics", "/api/v0/nodes", "/api/jobs/", "/api/other"} {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("CONNECT " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		status, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("CONNECT %s: no answer: %v", path, err)
		}
		if !strings.HasPrefix(status, "HTTP/1.1 ") || strings.HasPrefix(status, "HTTP/1.1 2") {
			t.Fatalf("CONNECT %s answered %q, want a refusal", path, status)
		}
	}
}
