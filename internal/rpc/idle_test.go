package rpc

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

const testIdle = 300 * time.Millisecond

// idleServer is tokenServer with a short idle timeout.
func idleServer(t *testing.T) string {
	t.Helper()
	srv, addr := tokenServer(t)
	srv.SetIdleTimeout(testIdle)
	return addr
}

// rawHello dials addr and presents the token without Hello's keepalives.
func rawHello(t *testing.T, addr string) *Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := NewConn(nc, nil)
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Call(ctx5(t), MHello, &pb.Status{Error: "s3cret"}, nil); err != nil {
		t.Fatalf("hello: %v", err)
	}
	return c
}

// TestIdleConnectionIsClosed: an authenticated peer that says nothing is
// closed once the idle timeout has passed, not before.
func TestIdleConnectionIsClosed(t *testing.T) {
	addr := idleServer(t)
	start := time.Now()
	c := rawHello(t, addr)
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("a silent connection was still open after 10s (idle timeout %v)", testIdle)
	}
	if took := time.Since(start); took < testIdle {
		t.Fatalf("closed after %v, before the idle timeout of %v", took, testIdle)
	}
}

// TestBusyLinkIsNotClosed: a peer that keeps calling, without
// keepalives, stays connected for many idle timeouts.
func TestBusyLinkIsNotClosed(t *testing.T) {
	addr := idleServer(t)
	c := rawHello(t, addr)
	until := time.Now().Add(5 * testIdle)
	for time.Now().Before(until) {
		if got, err := callEcho(ctx5(t), c, "busy"); err != nil || got != "busy" {
			t.Fatalf("a busy link broke: %q %v", got, err)
		}
		time.Sleep(testIdle / 6) // the pace of a busy link, not a wait for a condition
	}
}

// TestQuietLinkKeptByKeepalives: a client made with Hello learns the
// server's idle timeout and pings while it has nothing to say, so a quiet
// link stays up; the pings reach no handler.
func TestQuietLinkKeptByKeepalives(t *testing.T) {
	addr := idleServer(t)
	ctx := ctx5(t)
	c, err := DialToken(ctx, "tcp:"+addr, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
		t.Fatalf("a quiet link with keepalives was closed: %v", c.Err())
	case <-time.After(5 * testIdle):
	}
	if got, err := callEcho(ctx, c, "still"); err != nil || got != "still" {
		t.Fatalf("after %v of quiet: %q %v", 5*testIdle, got, err)
	}
	if n := c.sentN.Load(); n < 5 {
		t.Errorf("the client sent %d frames in %v of quiet; want pings", n, 5*testIdle)
	}
}

// TestDefaultIdleTimeout: a server that wants a token has the default
// idle timeout, says it in answer to Hello, and a server without a token
// has none.
func TestDefaultIdleTimeout(t *testing.T) {
	srv, addr := tokenServer(t)
	srv.mu.Lock()
	idle, sweeping := srv.idle, srv.sweepStop != nil
	srv.mu.Unlock()
	if idle != DefaultIdleTimeout || !sweeping {
		t.Fatalf("idle timeout %v, sweeping %v; want %v", idle, sweeping, DefaultIdleTimeout)
	}
	c, err := DialToken(ctx5(t), "tcp:"+addr, "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("closed with %v", c.Err())
	}
}

// TestIdleTimeoutShortenedLater: a timeout set after the sweeper started
// (RequireToken starts it with the default of minutes) takes effect.
func TestIdleTimeoutShortenedLater(t *testing.T) {
	srv, addr := tokenServer(t)
	c := rawHello(t, addr) // the server is up and its sweeper running
	srv.SetIdleTimeout(testIdle)
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("a silent connection was still open after 10s (idle timeout shortened to %v)", testIdle)
	}
}
