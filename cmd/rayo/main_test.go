package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/bench"
)

// TestMain does what main does before cobra: this test binary is also
// rayo's workers and the benchmark's child processes.
func TestMain(m *testing.M) {
	bench.ServeWorkerProfiling()
	rayo.ServeWorker()
	if len(os.Args) > 1 && os.Args[1] == bench.ChildCommand {
		if err := bench.RunChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "rayo ") || !strings.Contains(out, "go1") {
		t.Errorf("version printed %q", out)
	}
}

func TestMicrobenchmarkList(t *testing.T) {
	out, _, err := run(t, "microbenchmark", "--list")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); !slices.Equal(got, bench.Names()) {
		t.Errorf("--list printed %q, want %q", got, bench.Names())
	}
}

func TestMicrobenchmarkJSON(t *testing.T) {
	out, _, err := run(t, "microbenchmark", "--json", "--duration", "30ms", "--num-cpus", "2", "--put-mib", "2",
		"--filter", "^(memcpy_gigabytes|single_client_tasks_sync)$")
	if err != nil {
		t.Fatalf("microbenchmark: %v\n%s", err, out)
	}
	results := parseResults(t, out)
	var names []string
	for _, r := range results {
		names = append(names, r.Name)
		if r.Value <= 0 || r.Unit == "" {
			t.Errorf("%s = %v %q", r.Name, r.Value, r.Unit)
		}
	}
	// The floor the task figure is compared with runs too.
	want := []string{bench.FloorRoundTrips, bench.FloorMemcpy, "single_client_tasks_sync"}
	if !slices.Equal(names, want) {
		t.Errorf("metrics %q, want %q", names, want)
	}
	if results[len(results)-1].Ratio <= 0 {
		t.Errorf("single_client_tasks_sync has no ratio to the floor")
	}
}

func TestMicrobenchmarkBadFilter(t *testing.T) {
	if _, _, err := run(t, "microbenchmark", "--filter", "("); err == nil {
		t.Error("a bad --filter was accepted")
	}
}

func TestMicrobenchmarkActorCalls(t *testing.T) {
	out, _, err := run(t, "microbenchmark", "--json", "--duration", "30ms", "--num-cpus", "2", "--actors", "1",
		"--filter", "^1_(1|n)_actor_calls_(sync|async)$")
	if err != nil {
		t.Fatalf("microbenchmark: %v\n%s", err, out)
	}
	results := parseResults(t, out)
	var names []string
	for _, r := range results {
		names = append(names, r.Name)
		if r.Value <= 0 {
			t.Errorf("%s = %v", r.Name, r.Value)
		}
		if r.Name != bench.FloorRoundTrips && r.Ratio <= 0 {
			t.Errorf("%s has no ratio to the floor", r.Name)
		}
	}
	want := []string{bench.FloorRoundTrips, "1_1_actor_calls_sync", "1_1_actor_calls_async", "1_n_actor_calls_async"}
	if !slices.Equal(names, want) {
		t.Errorf("metrics %q, want %q", names, want)
	}
}

// result is one entry of `rayo microbenchmark --json`.
type result struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Ratio float64 `json:"ratio"`
}

// parseResults reads the JSON array that `microbenchmark --json` prints
// (after whatever the command printed before it).
func parseResults(t *testing.T, out string) []result {
	t.Helper()
	var results []result
	i := strings.IndexByte(out, '[')
	if i < 0 || json.Unmarshal([]byte(out[i:]), &results) != nil {
		t.Fatalf("--json output does not parse:\n%s", out)
	}
	return results
}

// A negative count is refused before anything is asked of a cluster.
func TestNegativeCountsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "tasks", "--limit", "-1"}, "bad --limit -1"},
		{[]string{"list", "tasks", "--offset", "-2"}, "bad --offset -2"},
		{[]string{"logs", "--node", "abc", "--pid", "7", "--tail", "-3"}, "bad --tail -3"},
	} {
		args := append(c.args, "--dashboard-address", "127.0.0.1:1")
		if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rayo %v: %v, want %q", c.args, err, c.want)
		}
	}
}
