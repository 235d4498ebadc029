package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/objstore"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startHead starts a head in this process (its control store too) with
// cfg's ports and store, and closes it when the test ends.
func startHead(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.Head, cfg.NumCPUs, cfg.StateDir, cfg.Token = true, 1, t.TempDir(), NewToken()
	if cfg.Port == 0 {
		cfg.Port = freePort(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

func TestFixedPortsAreListenedOn(t *testing.T) {
	rayletPort, metricsPort := freePort(t), freePort(t)
	n := startHead(t, Config{RayletPort: rayletPort, MetricsPort: metricsPort, ObjectStoreMemory: 64 << 20})

	wantRaylet := "127.0.0.1:" + strconv.Itoa(rayletPort)
	if got := n.Local().NodeAddr; got != wantRaylet {
		t.Errorf("the raylet listens at %s, want %s", got, wantRaylet)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := ListNodes(ctx, n.GCSAddr(), n.cfg.Token)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].Address != wantRaylet {
		t.Errorf("the control store has the node at %v, want %s", nodes, wantRaylet)
	}
	c, err := net.Dial("tcp", wantRaylet)
	if err != nil {
		t.Fatalf("nothing listens on the raylet port: %v", err)
	}
	c.Close()

	if got, want := n.raylet.MetricsAddr(), "127.0.0.1:"+strconv.Itoa(metricsPort); got != want {
		t.Errorf("metrics at %s, want %s", got, want)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatalf("metrics on their fixed port: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("metrics on their fixed port: %s", resp.Status)
	}
}

func TestRandomPortsByDefault(t *testing.T) {
	a := startHead(t, Config{ObjectStoreMemory: 64 << 20})
	b := startHead(t, Config{ObjectStoreMemory: 64 << 20})
	if a.Local().NodeAddr == b.Local().NodeAddr || strings.HasSuffix(a.Local().NodeAddr, ":0") {
		t.Errorf("two nodes without fixed ports listen at %s and %s", a.Local().NodeAddr, b.Local().NodeAddr)
	}
	if a.raylet.MetricsAddr() == b.raylet.MetricsAddr() || strings.HasSuffix(a.raylet.MetricsAddr(), ":0") {
		t.Errorf("two nodes without fixed ports serve metrics at %s and %s", a.raylet.MetricsAddr(), b.raylet.MetricsAddr())
	}
}

func TestBadPortsAreRefused(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"raylet port out of range", Config{RayletPort: 65536}, "RayletPort 65536: want a TCP port"},
		{"negative metrics port", Config{MetricsPort: -1}, "MetricsPort -1: want a TCP port"},
		{"raylet port taken", Config{RayletPort: takenPort}, "address already in use"},
		{"metrics port taken", Config{MetricsPort: takenPort}, "address already in use"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Head, cfg.NumCPUs, cfg.StateDir, cfg.Token = true, 1, t.TempDir(), NewToken()
			cfg.Port, cfg.ObjectStoreMemory = freePort(t), 64<<20
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			n, err := Start(ctx, cfg)
			if err == nil {
				_ = n.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			// The control store started first is gone again: its port is free.
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cfg.Port))
			if err != nil {
				t.Fatalf("the control store's port is still taken: %v", err)
			}
			ln.Close()
		})
	}
}

// TestStoreDefaultIsCgroupAware: a node given no store size takes the
// default that objstore derives from hostres (the cgroup's memory limit
// when there is one) and reports where it came from.
func TestStoreDefaultIsCgroupAware(t *testing.T) {
	mem, err := hostres.ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	want, wantSource := objstore.DefaultSizing()
	n := startHead(t, Config{})
	got, source := n.StoreSizing()
	if got != want || source != wantSource {
		t.Errorf("store %d (%s), want %d (%s)", got, source, want, wantSource)
	}
	if !strings.Contains(source, mem.Source) {
		t.Errorf("store source %q does not name the memory figure's %q", source, mem.Source)
	}
}
