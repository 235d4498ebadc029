package dashboard

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// One host that opens sockets and sends nothing gets its share of the API
// server; past it, its sockets are closed at once, and a request still
// gets through once one of its sockets goes.
func TestConnectionsPerHostAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const perHost = 4
	lim := newLimitListener(ln, 100, perHost)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lim) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	var silent []net.Conn
	for range perHost {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	// The server has taken them: every place is used.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lim.mu.Lock()
		n := lim.open
		lim.mu.Unlock()
		if n == perHost {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections accepted in 5s, want %d", n, perHost)
		}
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection past the bound: read %d, %v; want it closed (EOF)", n, err)
	}
	_ = extra.Close()
	_ = silent[0].Close()
	client := &http.Client{Timeout: 5 * time.Second}
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err = client.Get("http://" + ln.Addr().String() + "/")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("a request after a place was freed: %v", err)
	}
	resp.Body.Close()
	for _, c := range silent[1:] {
		_ = c.Close()
	}
}
