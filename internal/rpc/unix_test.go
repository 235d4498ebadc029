package rpc

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// envDialAs makes this test binary, run as another user by
// TestUnixSocketServesOnlyThisUser, dial the socket it names and say what
// happened.
const envDialAs = "RAYO_RPC_TEST_DIAL"

func TestUnixSocketServesOnlyThisUser(t *testing.T) {
	if path := os.Getenv(envDialAs); path != "" {
		dialAndReport(path)
		return
	}
	// A folder anyone may enter, as a loose setup would leave it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "raylet.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, mode %v; want 0600", err, fi.Mode())
	}
	srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
	defer srv.Close()

	// This user is served.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CallRaw(ctx, mEcho, &pb.ReadChunk{Length: 1}); err != nil {
		t.Fatalf("a call of this user's: %v", err)
	}
	c.Close()

	if os.Getuid() != 0 {
		// Only root can start a process as another user here; the mode
		// alone keeps the others out, which the check above saw.
		return
	}
	// Another user, with the socket opened up to all (umask 000): the
	// connection is closed unserved.
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary, where the other user may run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "rpc.test")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestUnixSocketServesOnlyThisUser$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envDialAs+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the other user's process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "dial: closed unserved") {
		t.Fatalf("another user's connection: %s", out)
	}
}

// dialAndReport calls the echo server at path and prints whether it
// answered or closed the connection unserved.
func dialAndReport(path string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path, nil)
	if err != nil {
		os.Stdout.WriteString("dial: refused: " + err.Error() + "\n")
		return
	}
	defer c.Close()
	// The server closes the connection without reading it, so the call
	// sees either an orderly close or, when its request was still unread
	// in the server's buffer, a reset: both mean it was not served.
	_, err = c.CallRaw(ctx, mEcho, &pb.ReadChunk{Length: 1})
	if errors.Is(err, ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "closed") {
		os.Stdout.WriteString("dial: closed unserved (" + err.Error() + ")\n")
	} else if err != nil {
		os.Stdout.WriteString("dial: " + err.Error() + "\n")
	} else {
		os.Stdout.WriteString("dial: answered\n")
	}
}
