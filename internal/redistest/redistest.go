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
		addr := "127.0.0.1:" + port
		cmd := exec.Command(Server, "--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", Server, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if answers(addr, exited, 10*time.Second) {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return addr
		}
		_ = cmd.Process.Kill()
		<-exited
		t.Logf("redis on %s did not come up (another process may have taken the port)", addr)
	}
	t.Fatal("could not start a Redis server")
	return ""
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
