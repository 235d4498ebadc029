package metrics

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// TestMetricsServerSpeaksHTTP1Only sends an HTTP/2 client's opening (h2c
// prior knowledge) to the metrics port: it must answer in HTTP/1.1, and
// its protocol set must leave HTTP/2 out (Go 1.26.8's HTTP/2 server flaws,
// GO-2026-6617, -6612, -6611, -6603).
func TestMetricsServerSpeaksHTTP1Only(t *testing.T) {
	s, err := Serve("127.0.0.1:0", testNode().Registry)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p := s.srv.Protocols; p == nil || p.HTTP2() || p.UnencryptedHTTP2() || !p.HTTP1() {
		t.Fatalf("protocols %v, want HTTP/1 alone", p)
	}
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 ") {
		t.Fatalf("answered %q, want an HTTP/1.1 status", status)
	}
}

// TestMetricsRefusesConnect sends CONNECT /metrics, which Go's server routes
// like a path: a 2xx answer would turn the connection into a tunnel that
// Go 1.26.8 goes on reading as HTTP (GO-2026-6613, request smuggling).
func TestMetricsRefusesConnect(t *testing.T) {
	s, err := Serve("127.0.0.1:0", testNode().Registry)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 405") {
		t.Fatalf("CONNECT /metrics answered %q, want 405", status)
	}
}
