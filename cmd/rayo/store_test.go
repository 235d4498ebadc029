package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStartObjectStoreMemory: --object-store-memory sizes the node's
// store, the daemon says so, and rayo status shows it (table and JSON),
// with the node's --labels.
func TestStartObjectStoreMemory(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	port := freePort(t)
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "1", "--dashboard-port", "0", "--object-store-memory", "96MiB", "--labels", "rayo.io/node-type=head,zone=a")
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	out, err := e.cmd("status", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"object_store_bytes": 100663296`) || !strings.Contains(string(out), `"object_store_source": "--object-store-memory"`) {
		t.Fatalf("status --json does not show the 96 MiB store:\n%s", out)
	}
	if !strings.Contains(string(out), `"rayo.io/node-type": "head"`) || !strings.Contains(string(out), `"zone": "a"`) {
		t.Fatalf("status --json does not show the node's labels:\n%s", out)
	}
	out, err = e.cmd("status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OBJECT STORE") || !strings.Contains(string(out), "96.0 MiB") {
		t.Fatalf("status does not show the 96 MiB store: %v\n%s", err, out)
	}
}

// TestStartObjectStoreMemoryDefault: without the flag the daemon picks a
// size and says where it comes from.
func TestStartObjectStoreMemoryDefault(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	port := freePort(t)
	e.daemon(t, "start", "--head", "--port", fmt.Sprint(port), "--num-cpus", "1", "--dashboard-port", "0")
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })
	out, err := e.cmd("status", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if strings.Contains(string(out), `"object_store_bytes": 0`) || !strings.Contains(string(out), `"object_store_source": "30% of`) {
		t.Fatalf("status --json lacks the default store's size and source:\n%s", out)
	}
}

func TestStartBadObjectStoreMemory(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	for _, bad := range []string{"lots", "0", "-1GiB", "2XB"} {
		c := e.cmd("start", "--head", "--port", fmt.Sprint(freePort(t)), "--object-store-memory", bad)
		out, err := c.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("--object-store-memory %s: want exit 1, got %v\n%s", bad, err, out)
		}
		if !strings.Contains(string(out), "--object-store-memory") || !strings.Contains(string(out), "512MiB") {
			t.Fatalf("--object-store-memory %s: unclear error:\n%s", bad, out)
		}
	}
}
