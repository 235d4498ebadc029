package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestStateDirIsThisUsers(t *testing.T) {
	t.Setenv("RAYO_STATE_DIR", "")
	want := filepath.Join(os.TempDir(), "rayo-"+strconv.Itoa(os.Getuid()))
	if got := StateDir(); got != want {
		t.Fatalf("StateDir() = %s, want %s", got, want)
	}
	t.Setenv("RAYO_STATE_DIR", "/somewhere/else")
	if got := StateDir(); got != "/somewhere/else" {
		t.Fatalf("StateDir() with RAYO_STATE_DIR = %s", got)
	}
}

func TestPrepareStateDirMakesAPrivateFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	if err := PrepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Fatalf("new state folder has mode %04o, want 0700", perm)
	}
	if err := PrepareStateDir(dir); err != nil {
		t.Fatalf("a second PrepareStateDir: %v", err)
	}
}

func TestCheckStateDirRefusesWhatOthersControl(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A folder of another user: one made here and given away when this
	// runs as root, or the root folder otherwise.
	foreign := "/"
	if os.Getuid() == 0 {
		foreign = filepath.Join(base, "foreign")
		if err := os.Mkdir(foreign, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ dir, want string }{
		{open, "writable by others"},
		{link, "symbolic link"},
		{file, "not a directory"},
		{foreign, "belongs to uid"},
		{filepath.Join(base, "missing"), "no such file"},
	} {
		err := CheckStateDir(c.dir)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.dir) {
			t.Errorf("CheckStateDir(%s) = %v, want an error naming it and saying %q", c.dir, err, c.want)
		}
		if c.want == "no such file" {
			continue // PrepareStateDir creates that one
		}
		if err := PrepareStateDir(c.dir); err == nil {
			t.Errorf("PrepareStateDir(%s) accepted it", c.dir)
		}
	}
	// Nothing is read from, or recorded in, a folder that is refused.
	if err := WriteCluster(open, ClusterInfo{Address: "a:1", Token: "t"}); err == nil {
		t.Error("WriteCluster wrote into a folder others can write")
	}
	if _, err := ReadCluster(open); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("ReadCluster of a folder others can write: %v", err)
	}
}

// The old record was written through cluster.json.tmp, so a link planted
// there made the daemon overwrite the file it pointed to.
func TestWriteClusterFollowsNoPlantedLink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "cluster.json.tmp")); err != nil {
		t.Fatal(err)
	}
	want := ClusterInfo{Address: "10.0.0.1:6379", Token: "secret"}
	if err := WriteCluster(dir, want); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Fatalf("the linked file now holds %q", b)
	}
	got, err := ReadCluster(dir)
	if err != nil || got.Address != want.Address || got.Token != want.Token {
		t.Fatalf("ReadCluster = %+v, %v", got, err)
	}
	fi, err := os.Stat(clusterFile(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cluster record: %v, mode %v; want 0600", err, fi.Mode())
	}
}

// A pid file names a daemon only while the process of that pid is the one
// that wrote it: `rayo stop` must not signal a process whose pid was
// reused, or one named by a planted record.
func TestPIDsListOnlyTheDaemonsThatRun(t *testing.T) {
	dir := t.TempDir()
	if err := WritePID(dir, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	start, err := processStart(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	plant := func(pid int, content string) {
		t.Helper()
		if err := os.WriteFile(pidFile(dir, pid), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plant(other.Process.Pid, strconv.Itoa(other.Process.Pid)) // the old format: a pid alone
	plant(1, fmt.Sprintf("1 %d\n", start))                    // another process's start time
	plant(999999999, "999999999 1\n")                         // no such process
	if got := PIDs(dir); !slices.Equal(got, []int{os.Getpid()}) {
		t.Fatalf("PIDs = %v, want only this process (%d)", got, os.Getpid())
	}
	for _, pid := range []int{other.Process.Pid, 1, 999999999} {
		if _, err := os.Stat(pidFile(dir, pid)); !os.IsNotExist(err) {
			t.Errorf("the false record of pid %d was kept: %v", pid, err)
		}
	}
	if err := WritePID(dir, other.Process.Pid); err != nil {
		t.Fatal(err)
	}
	got := PIDs(dir)
	slices.Sort(got)
	want := []int{os.Getpid(), other.Process.Pid}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("PIDs = %v, want %v", got, want)
	}
}

func TestCachedBinaryChecksTheContent(t *testing.T) {
	dir := t.TempDir()
	exe := []byte("#!/bin/sh\necho the real job\n")
	d := sha256.Sum256(exe)
	sum := hex.EncodeToString(d[:])
	path := filepath.Join(dir, sum)
	// Planted: the right size, other bytes.
	fake := []byte("#!/bin/sh\necho a planted one\n")[:len(exe)]
	if err := os.WriteFile(path, fake, 0o755); err != nil {
		t.Fatal(err)
	}
	if cachedBinary(path, sum, int64(len(exe))) {
		t.Fatal("a file of the right size but other content passed for the executable")
	}
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	if !cachedBinary(path, sum, int64(len(exe))) {
		t.Fatal("the real executable was refused")
	}
	if cachedBinary(filepath.Join(dir, "missing"), sum, int64(len(exe))) {
		t.Fatal("a missing file passed")
	}
}

func TestStartRefusesAShortToken(t *testing.T) {
	if err := CheckToken(NewToken()); err != nil {
		t.Fatalf("a token NewToken made: %v", err)
	}
	_, err := Start(t.Context(), Config{Head: true, Token: "password123", NumCPUs: 1, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "11 characters") {
		t.Fatalf("Start with an 11-character token: %v", err)
	}
}

// A node that listens beyond loopback still keeps its metrics on the
// machine unless told otherwise.
func TestMetricsStayOnLoopback(t *testing.T) {
	n, err := Start(t.Context(), Config{Head: true, Host: "0.0.0.0", Port: 0, Token: NewToken(), NumCPUs: 1, StateDir: t.TempDir(), SpillDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	host, _, err := net.SplitHostPort(n.raylet.MetricsAddr())
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("metrics at %q (%v), want 127.0.0.1", n.raylet.MetricsAddr(), err)
	}
}

// A file hashed once is trusted while it stays as it was; any change to
// it, even of the same size, makes the node hash it again.
func TestVerifiedBinaryIsHashedAgainOnceChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(path, []byte("the real job"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := &gcsClient{}
	g.markVerifiedLocked(path)
	if !g.stillVerifiedLocked(path) {
		t.Fatal("a file just verified is not")
	}
	if err := os.WriteFile(path, []byte("a planted!!!"), 0o755); err != nil { // same size
		t.Fatal(err)
	}
	if g.stillVerifiedLocked(path) {
		t.Fatal("a rewritten file still counts as verified")
	}
}
