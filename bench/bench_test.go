package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo"
)

// TestMain lets this test binary serve as rayo's workers and as the
// suite's child processes, as main does in cmd/rayo.
func TestMain(m *testing.M) {
	ServeWorkerProfiling()
	rayo.ServeWorker()
	if len(os.Args) > 1 && os.Args[1] == ChildCommand {
		if err := RunChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSuite runs every metric briefly, with small sizes, and checks that
// each gave a positive figure and that the report formats hold them.
func TestSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and child processes")
	}
	cfg := Config{
		Duration:      50 * time.Millisecond,
		NumCPUs:       2,
		PutBytes:      4 << 20,
		GetBytes:      8 << 20,
		Batch:         100,
		Clients:       2,
		Actors:        2,
		ContainedRefs: 1000,
		MemoryActors:  16,
		SpillBytes:    64 << 20,
		ProfileDir:    t.TempDir(),
	}
	// A safety net, not a speed check: the suite's 10,000-task graph alone
	// takes a minute under the race detector on a busy 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	start := time.Now()
	results, err := Run(ctx, cfg)
	t.Logf("suite took %v", time.Since(start))
	if err != nil {
		t.Errorf("Run: %v", err)
	}
	checkSuiteResults(t, cfg, results)
	checkSuiteJSON(t, cfg, results)
	checkSuiteTable(t, cfg, results)
	checkSuiteProfiles(t, cfg)
}

// checkSuiteResults checks that every metric of cfg was reported, in order,
// with a positive figure, and that the compared ones have ratios and verdicts.
func checkSuiteResults(t *testing.T, cfg Config, results []Result) {
	t.Helper()
	var got []string
	for _, r := range results {
		got = append(got, r.Name)
		if r.Err != "" || !(r.Value > 0) {
			t.Errorf("%s = %v %s (error %q), want a positive figure", r.Name, r.Value, r.Unit, r.Err)
		}
	}
	if !slices.Equal(got, NamesFor(cfg)) {
		t.Errorf("metrics reported: %q\nwant %q", got, NamesFor(cfg))
	}
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Name] = r
	}
	checkSuiteVerdicts(t, byName)
}

// checkSuiteVerdicts checks the ratios to the floors and the DESIGN target
// verdicts of the metrics that have them.
func checkSuiteVerdicts(t *testing.T, byName map[string]Result) {
	t.Helper()
	if r := byName["single_client_tasks_sync"]; r.Ratio <= 0 {
		t.Errorf("single_client_tasks_sync has no ratio to the floor: %+v", r)
	}
	for _, n := range []string{"1_1_actor_calls_sync", "1_1_actor_calls_async", "1_1_actor_calls_concurrent",
		"1_n_actor_calls_async", "n_n_actor_calls_async", "n_n_actor_calls_with_arg_async", "actor_creation_per_second"} {
		if r, ok := byName[n]; !ok || !(r.Value > 0) || r.Ratio <= 0 {
			t.Errorf("%s: no positive figure or no ratio to the floor: %+v", n, r)
		}
	}
	for _, n := range []string{"1_1_actor_calls_sync", "1_1_actor_calls_async", "n_n_actor_calls_async"} {
		if r := byName[n]; r.Met == nil || r.Target == "" {
			t.Errorf("%s has no DESIGN target verdict: %+v", n, r)
		}
	}
	if r := byName["memory_per_actor"]; r.Met == nil || r.Target == "" {
		t.Errorf("memory_per_actor has no DESIGN target verdict: %+v", r)
	}
	for _, n := range []string{"single_client_put_gigabytes", "single_client_put_gigabytes_cold"} {
		if r := byName[n]; r.Ratio <= 0 || r.Met == nil {
			t.Errorf("%s has no ratio to memcpy or no verdict: %+v", n, r)
		}
	}
	if r := byName["single_client_get_1GiB_float64"]; !r.ok {
		t.Errorf("Get of a stored []float64 copied it: %+v", r)
	}
}

// checkSuiteJSON checks that the JSON report parses and holds every metric
// of cfg, in order, each with a positive value and a unit.
func checkSuiteJSON(t *testing.T, cfg Config, results []Result) {
	t.Helper()
	var js bytes.Buffer
	if err := WriteJSON(&js, results); err != nil {
		t.Fatal(err)
	}
	var parsed []struct {
		Name  string   `json:"name"`
		Value *float64 `json:"value"`
		Unit  string   `json:"unit"`
		Ratio float64  `json:"ratio"`
	}
	if err := json.Unmarshal(js.Bytes(), &parsed); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, js.String())
	}
	var jsNames []string
	for _, p := range parsed {
		jsNames = append(jsNames, p.Name)
		if p.Value == nil || *p.Value <= 0 || p.Unit == "" {
			t.Errorf("JSON entry %q has value %v, unit %q", p.Name, p.Value, p.Unit)
		}
	}
	if !slices.Equal(jsNames, NamesFor(cfg)) {
		t.Errorf("JSON names: %q\nwant %q", jsNames, NamesFor(cfg))
	}
}

// checkSuiteTable checks that the table report names every metric of cfg,
// and logs it.
func checkSuiteTable(t *testing.T, cfg Config, results []Result) {
	t.Helper()
	var table bytes.Buffer
	if err := WriteTable(&table, results); err != nil {
		t.Fatal(err)
	}
	for _, n := range NamesFor(cfg) {
		if !strings.Contains(table.String(), n) {
			t.Errorf("table lacks %s:\n%s", n, table.String())
		}
	}
	t.Logf("\n%s", table.String())
}

// checkSuiteProfiles checks that the profiles of the measured phases were
// written, the driver's at least, and that the files by which the workers
// took part are gone.
func checkSuiteProfiles(t *testing.T, cfg Config) {
	t.Helper()
	for _, n := range []string{"single_client_tasks_sync", "single_client_tasks_async"} {
		if fi, err := os.Stat(cfg.ProfileDir + "/" + n + ".pprof"); err != nil || fi.Size() == 0 {
			t.Errorf("no CPU profile for %s: %v", n, err)
		}
	}
	entries, _ := os.ReadDir(cfg.ProfileDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("profile folder still holds %s", e.Name())
		}
	}
}

// TestFilter checks that a filter selects its metrics and the floors they
// are compared with, and nothing else.
func TestFilter(t *testing.T) {
	cfg := Config{}
	cfg.Filter = mustRegexp(t, "^single_client_put_gigabytes$")
	var names []string
	for _, m := range selected(cfg.withDefaults()) {
		names = append(names, m.name)
	}
	if want := []string{FloorMemcpy, "single_client_put_gigabytes"}; !slices.Equal(names, want) {
		t.Errorf("selected %q, want %q", names, want)
	}
}

// TestFilterActors checks that "actor" selects the actor metrics and the
// floor they are compared with.
func TestFilterActors(t *testing.T) {
	cfg := Config{Filter: mustRegexp(t, "actor")}
	var names []string
	for _, m := range selected(cfg.withDefaults()) {
		names = append(names, m.name)
	}
	want := []string{FloorRoundTrips, "1_1_actor_calls_sync", "1_1_actor_calls_async", "1_1_actor_calls_concurrent",
		"1_n_actor_calls_async", "n_n_actor_calls_async", "n_n_actor_calls_with_arg_async", "actor_creation_per_second", "memory_per_actor"}
	if !slices.Equal(names, want) {
		t.Errorf("selected %q, want %q", names, want)
	}
}

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{
		0.5: "0.50", 12.34: "12.3", 999.9: "999.9", 1000: "1,000", 1234567.8: "1,234,568", -45678: "-45,678",
	} {
		if got := number(v); got != want {
			t.Errorf("number(%v) = %q, want %q", v, got, want)
		}
	}
}

func mustRegexp(t *testing.T, s string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return re
}
