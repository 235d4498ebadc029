package demos

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

// --- see what runs where ----------------------------------------------

// squareTask's tasks show in the state API as "square".
var squareTask = rayo.Func1(square, rayo.Name("square"))

func square(x int) int { return x * x }

// Tally is an actor: a stateful worker whose calls run in order.
type Tally struct{ total int }

// NewTally makes an empty tally.
func NewTally() *Tally { return &Tally{} }

// Add adds x to the tally and returns the total.
func (t *Tally) Add(x int) int { t.total += x; return t.total }

var (
	newTally = rayo.Actor0(NewTally)
	tallyAdd = rayo.Method1(newTally, (*Tally).Add)
)

// Observe runs ten square tasks and a Tally actor, then looks at them as
// the dashboard does: the state API's summaries (what `rayo summary`
// prints), the cluster's resources, and a timeline that Perfetto opens,
// written to a temporary file. It prints the cluster's CPUs on a line of
// their own ("cluster CPUs: N").
func Observe(ctx context.Context) error {
	if rayo.DashboardURL() == "" {
		return errors.New("no API server (DashboardPort(0)?)")
	}
	// Where to look while it runs (another port when 8265 is taken).
	fmt.Fprintln(os.Stderr, "dashboard at", rayo.DashboardURL())

	refs := make([]rayo.Ref[int], 10)
	for i := range refs {
		refs[i] = squareTask.Remote(rayo.V(i))
	}
	squares, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return err
	}
	t := newTally.Remote()
	for _, s := range squares {
		tallyAdd.Remote(t, rayo.V(s))
	}
	total, err := rayo.Get(ctx, tallyAdd.Remote(t, rayo.V(0)))
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
	// summaries fill in shortly after the tasks end.
	finished, err := waitSummary(ctx, "tasks", "square", "FINISHED", len(refs))
	if err != nil {
		return err
	}
	fmt.Println("square tasks finished:", finished)
	alive, err := waitSummary(ctx, "actors", "Tally", "ALIVE", 1)
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
	fmt.Fprintln(os.Stderr, "timeline written to", path, "(open it in Perfetto)")
	return rayo.Kill(ctx, t)
}

// waitSummary waits until the state API's summary of what ("tasks" by
// name, "actors" by class) counts at least want of name in state.
func waitSummary(ctx context.Context, what, name, state string, want int) (int, error) {
	for {
		var s struct {
			Summary map[string]struct {
				StateCounts map[string]int `json:"state_counts"`
			} `json:"summary"`
		}
		if err := getJSON(ctx, "/api/v0/"+what+"/summarize", &s); err != nil {
			return 0, err
		}
		if n := s.Summary[name].StateCounts[state]; n >= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %d %s %s in the %s summary: %w", want, state, name, what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rayo.DashboardURL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
