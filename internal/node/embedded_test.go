package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/raylet"
)

// An embedded cluster lives in a session folder of its own under the
// state folder; once the driver runs, the folders of drivers gone are
// pruned and its API server starts, on a free port when its own is taken;
// Close stops its raylet.
func TestStartEmbedded(t *testing.T) {
	root := t.TempDir()
	gone := filepath.Join(root, fmt.Sprintf("job-%d-ab12", 1<<30)) // a joined driver that died
	if err := os.MkdirAll(gone, 0o755); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var warn strings.Builder
	e, err := StartEmbedded(EmbeddedConfig{
		StateDir:          root,
		NumCPUs:           1,
		NumGPUs:           0,
		Memory:            1 << 30,
		Resources:         map[string]float64{"disk": 2},
		ObjectStoreMemory: 1 << 20,
		DashboardPort:     taken.Addr().(*net.TCPAddr).Port,
		Warn:              &warn,
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = e.Close()
		}
	}()
	if filepath.Dir(e.SessionDir()) != root || !strings.HasPrefix(filepath.Base(e.SessionDir()), fmt.Sprintf("s-%d-", os.Getpid())) {
		t.Errorf("session folder %s, want s-%d-... under %s", e.SessionDir(), os.Getpid(), root)
	}
	if e.DriverAddr() != filepath.Join(e.SessionDir(), "driver.sock") || e.NodeName() == "" {
		t.Errorf("driver socket %q, node %q", e.DriverAddr(), e.NodeName())
	}
	total, _, _ := e.Raylet().Resources()
	got := map[string]float64{}
	for _, r := range total {
		got[r.Name] = r.Quantity
	}
	if got[raylet.CPU] != 1 || got[raylet.MemoryResource] != 1<<30 || got["disk"] != 2 || got[raylet.GPU] != 0 {
		t.Errorf("resources %v, want 1 CPU, 1 GiB of memory, 2 disk and no GPU", got)
	}
	if url := e.DashboardURL(); url != "" {
		t.Errorf("the API server started (%s) before the driver runs: it is off the path to the first result", url)
	}
	e.DriverRunning(func() uint64 { return 0 })
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead driver's folder is still there (%v)", err)
	}
	url := e.DashboardURL()
	if url == "" || strings.HasSuffix(url, fmt.Sprintf(":%d", taken.Addr().(*net.TCPAddr).Port)) {
		t.Fatalf("dashboard at %q, want a free port instead of the taken one (warnings: %q)", url, warn.String())
	}
	resp, err := http.Get(url + "/api/v0/nodes")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), e.NodeName()) {
		t.Fatalf("GET /api/v0/nodes: %d %s, want the node %s", resp.StatusCode, body, e.NodeName())
	}
	sock := e.Raylet().Addr()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the raylet's socket %s outlives Close (%v)", sock, err)
	}
	if _, err := http.Get(url + "/api/v0/nodes"); err == nil {
		t.Errorf("the API server still answers after Close")
	}
}

// Without a dashboard port there is no API server.
func TestStartEmbeddedWithoutDashboard(t *testing.T) {
	e, err := StartEmbedded(EmbeddedConfig{StateDir: t.TempDir(), NumCPUs: 1, ObjectStoreMemory: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.DashboardURL() != "" {
		t.Fatalf("DashboardURL %q, want none", e.DashboardURL())
	}
}

// What an embedded cluster cannot start with is refused clearly.
func TestStartEmbeddedRefusesBadInput(t *testing.T) {
	_, err := StartEmbedded(EmbeddedConfig{StateDir: t.TempDir(), NumCPUs: 0})
	if err == nil || !strings.Contains(err.Error(), "NumCPUs must be positive") {
		t.Errorf("NumCPUs 0: %v, want it refused", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = StartEmbedded(EmbeddedConfig{StateDir: file, NumCPUs: 1})
	if err == nil || !strings.Contains(err.Error(), "state folder") {
		t.Errorf("a state folder that is a file: %v, want it refused", err)
	}
}

// An embedded node's GPUs are those asked for, none when 0, and those of
// Resources when not given.
func TestNodeResources(t *testing.T) {
	res := map[string]float64{raylet.GPU: 4, "x": 1}
	if got := nodeResources(res, 2, 0); got[raylet.GPU] != 2 || got["x"] != 1 {
		t.Errorf("2 GPUs asked: %v", got)
	}
	if got := nodeResources(res, 0, 0); got[raylet.GPU] != 0 {
		t.Errorf("no GPUs asked: %v", got)
	}
	if got := nodeResources(res, -1, 5); got[raylet.GPU] != 4 || got[raylet.MemoryResource] != 5 {
		t.Errorf("GPUs from Resources, memory 5: %v", got)
	}
	if res[raylet.GPU] != 4 || len(res) != 2 {
		t.Errorf("the caller's map changed: %v", res)
	}
}

// A driver joins only a cluster with a node on its machine; the files
// of TLSFiles come three together.
func TestJoinRefusals(t *testing.T) {
	t.Setenv("RAYO_STATE_DIR", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Join(ctx, JoinConfig{Address: "127.0.0.1:1"})
	if !errors.Is(err, ErrNoLocalNode) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Join without a node here: %v, want ErrNoLocalNode naming the address", err)
	}
	if err := driverTLS([]string{"cert", "", "ca"}, ""); err == nil || !strings.Contains(err.Error(), "all three") {
		t.Errorf("TLSFiles without a key: %v, want it refused", err)
	}
	if err := driverTLS([]string{"/nonexistent/c", "/nonexistent/k", "/nonexistent/ca"}, ""); err == nil {
		t.Errorf("TLSFiles that do not exist: accepted")
	}
}
