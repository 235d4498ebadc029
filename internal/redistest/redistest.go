// Package redistest runs throwaway Redis servers (Debian's redis-server,
// which `make test` installs) for tests of the control store's Redis
// backend.
package redistest

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is the Redis executable tests run.
const Server = "/usr/bin/redis-server"

// Start runs a Redis server on a free loopback port and returns its
// address; it is killed when the test ends. Without the executable the
// test is skipped.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t).Addr
}

// Redis is a running Redis server that a test can restart empty, as a
// Redis without persistence comes back after a crash.
type Redis struct {
	Addr   string // HOST:PORT
	port   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartServer runs a Redis server on a free loopback port; it is killed
// when the test ends. Without the executable the test is skipped.
func StartServer(t testing.TB) *Redis {
	t.Helper()
	if _, err := os.Stat(Server); err != nil {
		t.Skipf("no Redis server to test with: %v", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		_ = ln.Close()
		r := &Redis{Addr: "127.0.0.1:" + port, port: port}
		if r.launch(t) {
			t.Cleanup(r.kill)
			return r
		}
		t.Logf("redis on %s did not come up (another process may have taken the port)", r.Addr)
	}
	t.Fatal("could not start a Redis server")
	return nil
}

// launch starts the server on r's port, with an empty data folder, and
// reports whether it answers.
func (r *Redis) launch(t testing.TB) bool {
	t.Helper()
	cmd := exec.Command(Server, "--port", r.port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Server, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited
	if answers(r.Addr, exited, 10*time.Second) {
		return true
	}
	r.kill()
	return false
}

func (r *Redis) kill() {
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// Restart kills the server (SIGKILL) and starts a new, empty one on the
// same port: everything written to it is lost.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.kill()
	for attempt := 0; attempt < 50; attempt++ {
		if r.launch(t) {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger a moment
	}
	t.Fatalf("redis did not come back on %s", r.Addr)
}

// answers polls addr until Redis answers PING, the process exits or the
// deadline passes.
func answers(addr string, exited <-chan struct{}, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 7)
			n, _ := c.Read(buf)
			_ = c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond) // polling another process
	}
	return false
}
