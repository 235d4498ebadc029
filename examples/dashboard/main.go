// Dashboard shows what runs where, as the seed's dashboard section does:
// rayo.Init starts an API server next to the embedded cluster (the web
// dashboard at its root, the state API under /api/v0/, Prometheus metrics
// at /metrics). The program runs some tasks and an actor, then reads the
// state API the way `rayo summary` does, asks for the cluster's resources,
// and writes a timeline that Perfetto opens.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/rayo-dev/rayo"
)

// square is a remote function; its tasks show in the state API as
// "square".
var square = rayo.Func1(func(x int) int { return x * x }, rayo.Name("square"))

// Tally is an actor: a stateful worker whose calls run in order.
type Tally struct{ total int }

// Add adds x to the tally and returns it.
func (t *Tally) Add(x int) int { t.total += x; return t.total }

var (
	newTally = rayo.Actor0(func() *Tally { return &Tally{} })
	add      = rayo.Method1(newTally, (*Tally).Add)
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	// In a worker process (this same executable, started by rayo) Init
	// serves tasks and never returns, so it comes first.
	if err := rayo.Init(rayo.NumCPUs(2)); err != nil {
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); e != nil && err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if rayo.DashboardURL() == "" {
		return errors.New("no API server")
	}
	// Where to look while it runs (the address changes when 8265 is taken).
	fmt.Fprintln(os.Stderr, "dashboard at", rayo.DashboardURL())

	refs := make([]rayo.Ref[int], 10)
	for i := range refs {
		refs[i] = square.Remote(rayo.V(i))
	}
	squares, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return err
	}
	t := newTally.Remote()
	for _, s := range squares {
		add.Remote(t, rayo.V(s))
	}
	total, err := rayo.Get(ctx, add.Remote(t, rayo.V(0)))
	if err != nil {
		return err
	}
	fmt.Println("sum of squares:", total)

	resources, err := rayo.ClusterResources(ctx)
	if err != nil {
		return err
	}
	fmt.Println("cluster CPUs:", resources["CPU"])

	// Owners and workers report task states in batches (every 200 ms): the
	// summary fills in shortly after the tasks end.
	finished, err := waitFinished(ctx, "square", len(refs))
	if err != nil {
		return err
	}
	fmt.Println("square tasks finished:", finished)
	alive, err := aliveActors(ctx, "Tally")
	if err != nil {
		return err
	}
	fmt.Println("Tally actors alive:", alive)

	var trace bytes.Buffer
	if err := rayo.Timeline(ctx, &trace, ""); err != nil {
		return err
	}
	var events []struct{ Name, Ph string }
	if err := json.Unmarshal(trace.Bytes(), &events); err != nil {
		return fmt.Errorf("timeline: %w", err)
	}
	n := 0
	for _, e := range events {
		if e.Ph == "X" && e.Name == "square" {
			n++
		}
	}
	fmt.Println("square tasks on the timeline:", n)
	path := filepath.Join(os.TempDir(), fmt.Sprintf("rayo-timeline-%d.json", os.Getpid()))
	if err := os.WriteFile(path, trace.Bytes(), 0o644); err != nil {
		return err
	}
	defer os.Remove(path)
	fmt.Fprintln(os.Stderr, "timeline written to", path, "(open it in https://ui.perfetto.dev)")
	return nil
}

// summary is the answer of /api/v0/tasks/summarize and
// /api/v0/actors/summarize: counts by state per name or class.
type summary struct {
	Summary map[string]struct {
		StateCounts map[string]int `json:"state_counts"`
	} `json:"summary"`
}

func getSummary(ctx context.Context, what string) (summary, error) {
	var s summary
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rayo.DashboardURL()+"/api/v0/"+what+"/summarize", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("%s summary: %s", what, resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitFinished waits until want tasks named name are FINISHED.
func waitFinished(ctx context.Context, name string, want int) (int, error) {
	for {
		s, err := getSummary(ctx, "tasks")
		if err != nil {
			return 0, err
		}
		if n := s.Summary[name].StateCounts["FINISHED"]; n >= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %d finished %s tasks: %w", want, name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func aliveActors(ctx context.Context, class string) (int, error) {
	for {
		s, err := getSummary(ctx, "actors")
		if err != nil {
			return 0, err
		}
		if n := s.Summary[class].StateCounts["ALIVE"]; n > 0 {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for a live %s actor: %w", class, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
