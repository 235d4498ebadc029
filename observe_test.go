package rayo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestClusterAndAvailableResources(t *testing.T) {
	ctx := ctxT(t)
	if !IsInitialized() {
		t.Fatal("IsInitialized is false after Init")
	}
	total, err := ClusterResources(ctx)
	if err != nil || total["CPU"] != 2 {
		t.Fatalf("ClusterResources: %v %v", total, err)
	}
	// While a task holds a CPU, one of the two is free.
	hold := sleepMs.Remote(V(3000))
	deadline := time.Now().Add(10 * time.Second)
	for {
		free, err := AvailableResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if free["CPU"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("AvailableResources while a task runs: %v", free)
		}
		time.Sleep(10 * time.Millisecond) // the raylet's own view changes when the lease starts
	}
	if _, err := Get(ctx, hold); err != nil {
		t.Fatal(err)
	}
}

func TestTimelineWritesTheTasksThatRan(t *testing.T) {
	ctx := ctxT(t)
	r := add.Remote(V(20), V(22))
	if _, err := Get(ctx, r); err != nil {
		t.Fatal(err)
	}
	id := r.ID()[:32] // the task's ID: the object's without its index
	// The events arrive within a flush or two (every 200 ms), but each
	// Timeline renders the whole table, which earlier tests of this
	// process (TestTenThousandTaskGraph) have filled: under -race on a
	// loaded machine one call took seconds.
	deadline := time.Now().Add(45 * time.Second)
	for {
		var buf bytes.Buffer
		if err := Timeline(ctx, &buf, ""); err != nil {
			t.Fatal(err)
		}
		var events []struct {
			Ph   string
			Pid  int
			Tid  int
			Args map[string]any
		}
		if err := json.Unmarshal(buf.Bytes(), &events); err != nil {
			t.Fatalf("not a JSON array of trace events: %v\n%.300s", err, buf.String())
		}
		for _, e := range events {
			if e.Ph == "X" && e.Args["task_id"] == id && e.Pid > 0 && e.Tid > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is not in the timeline: %.500s", id, buf.String())
		}
		time.Sleep(50 * time.Millisecond) // events reach the table every 200 ms
	}
}

func TestTimelineWithoutADashboard(t *testing.T) {
	restart(t, NumCPUs(1), DashboardPort(0))
	if err := Timeline(context.Background(), &bytes.Buffer{}, ""); !errors.Is(err, ErrNoDashboard) {
		t.Fatalf("Timeline with no API server: %v", err)
	}
}
