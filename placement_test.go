package rayo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// newGroup makes a placement group that the test removes when it ends.
func newGroup(t *testing.T, bundles []Bundle, strategy PlacementStrategy, opts ...Option) *PlacementGroup {
	t.Helper()
	pg, err := NewPlacementGroup(ctxT(t), bundles, strategy, opts...)
	if err != nil {
		t.Fatalf("NewPlacementGroup: %v", err)
	}
	t.Cleanup(func() { _ = pg.Remove(context.Background()) })
	return pg
}

// The test cluster has 2 CPUs.
func TestPlacementGroupReservesItsBundles(t *testing.T) {
	ctx := ctxT(t)
	pg := newGroup(t, []Bundle{{"CPU": 1}, {"CPU": 1}}, StrategyStrictPack, Name("pair"))
	// Tasks sent before the group is ready wait for it.
	early := add.Options(InPlacementGroup(pg, 0)).Remote(V(1), V(1))
	if err := pg.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if v, err := Get(ctx, early); err != nil || v != 2 {
		t.Fatalf("task sent before Ready: %v, %v", v, err)
	}
	info, err := pg.Info(ctx)
	if err != nil || info.State != "CREATED" || len(info.Nodes) != 2 || info.Nodes[0] == "" || info.Nodes[0] != info.Nodes[1] {
		t.Fatalf("Info: %+v, %v", info, err)
	}
	nodes, err := Nodes(ctx)
	if err != nil || info.Nodes[0] != nodes[0].ID {
		t.Fatalf("bundles on %q, the node is %+v (%v)", info.Nodes[0], nodes, err)
	}
	for _, i := range []int{0, 1, -1} {
		if v, err := Get(ctx, inc.Options(InPlacementGroup(pg, i)).Remote(V(i))); err != nil || v != i+1 {
			t.Errorf("task in bundle %d: %v, %v", i, v, err)
		}
	}
	c := newCounter.Options(InPlacementGroup(pg, 1)).Remote()
	if v, err := Get(ctx, incr.Remote(c)); err != nil || v != 1 {
		t.Errorf("actor in bundle 1: %v, %v", v, err)
	}
	_ = Kill(ctx, c)
	// The group holds both CPUs: a task outside it waits until it goes.
	outside := inc.Remote(V(41))
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	ready, _, _ := Wait(wctx, []Ref[int]{outside}, 1)
	cancel()
	if len(ready) != 0 {
		t.Fatal("a task outside the group ran on its CPUs")
	}
	found, err := GetPlacementGroup(ctx, "pair")
	if err != nil || found.ID() != pg.ID() || len(found.Bundles()) != 2 {
		t.Fatalf("GetPlacementGroup: %v, %v", found, err)
	}
	if err := pg.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if v, err := Get(ctx, outside); err != nil || v != 42 {
		t.Fatalf("task outside the group after removal: %v, %v", v, err)
	}
	if err := pg.Ready(ctx); !errors.Is(err, ErrPlacementGroupRemoved) {
		t.Fatalf("Ready after Remove: %v", err)
	}
	all, err := PlacementGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var seen *PlacementGroupInfo
	for i := range all {
		if all[i].ID == pg.ID() {
			seen = &all[i]
		}
	}
	if seen == nil || seen.State != "REMOVED" || seen.Name != "pair" || seen.Strategy != StrategyStrictPack {
		t.Fatalf("PlacementGroups: %+v", seen)
	}
	if _, err := GetPlacementGroup(ctx, "pair"); !errors.Is(err, ErrUnknownPlacementGroup) {
		t.Fatalf("GetPlacementGroup of a removed name: %v", err)
	}
}

func TestPlacementGroupRemovalStopsItsTasks(t *testing.T) {
	ctx := ctxT(t)
	pg := newGroup(t, []Bundle{{"CPU": 1}}, StrategyPack)
	if err := pg.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	running := sleepMs.Options(InPlacementGroup(pg, 0), MaxRetries(0)).Remote(V(60_000))
	for !taskRunning(running) {
		select {
		case <-ctx.Done():
			t.Fatal("the task never started")
		case <-time.After(5 * time.Millisecond):
		}
	}
	waiting := sleepMs.Options(InPlacementGroup(pg, 0)).Remote(V(1))
	if err := pg.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, running); err == nil {
		t.Error("a task running in a removed group went on")
	}
	if _, err := Get(ctx, waiting); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("a task waiting for a removed group: %v", err)
	}
	later := inc.Options(InPlacementGroup(pg, 0)).Remote(V(1))
	if _, err := Get(ctx, later); !errors.Is(err, ErrInfeasible) || !strings.Contains(err.Error(), "removed") {
		t.Errorf("a task sent to a removed group: %v", err)
	}
}

func TestPlacementGroupThatCannotBePlaced(t *testing.T) {
	ctx := ctxT(t)
	pg := newGroup(t, []Bundle{{"CPU": 64}}, StrategyPack)
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := pg.Ready(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no node can ever hold bundle 0") {
		t.Fatalf("Ready of a group too big for the cluster: %v", err)
	}
	info, err := pg.Info(ctx)
	if err != nil || info.State != "PENDING" || !strings.Contains(info.Reason, "CPU=64") {
		t.Fatalf("Info: %+v, %v", info, err)
	}
	spread := newGroup(t, []Bundle{{"CPU": 0.5}, {"CPU": 0.5}}, StrategyStrictSpread)
	wctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	err = spread.Ready(wctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "STRICT_SPREAD needs 2 nodes") {
		t.Fatalf("STRICT_SPREAD over one node: %v", err)
	}
}

func TestPlacementGroupBadInput(t *testing.T) {
	ctx := ctxT(t)
	for name, tc := range map[string]struct {
		bundles  []Bundle
		strategy PlacementStrategy
		want     string
	}{
		"no bundles":       {nil, StrategyPack, "at least one bundle"},
		"empty bundle":     {[]Bundle{{}}, StrategyPack, "bundle 0 is empty"},
		"negative":         {[]Bundle{{"CPU": -1}}, StrategyPack, "asks for -1 of CPU"},
		"unknown strategy": {[]Bundle{{"CPU": 1}}, "CLUSTERED", `unknown strategy "CLUSTERED"`},
		"group resource":   {[]Bundle{{"CPU_group_0_ab": 1}}, StrategyPack, "placement group's resource"},
	} {
		if _, err := NewPlacementGroup(ctx, tc.bundles, tc.strategy); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
	newGroup(t, []Bundle{{"CPU": 0.1}}, StrategyPack, Name("twice"))
	if _, err := NewPlacementGroup(ctx, []Bundle{{"CPU": 0.1}}, StrategyPack, Name("twice")); err == nil || !strings.Contains(err.Error(), `named "twice" exists`) {
		t.Errorf("a second group of the same name: %v", err)
	}
	pg := newGroup(t, []Bundle{{"CPU": 0.1}}, StrategyPack)
	if _, err := Get(ctx, inc.Options(InPlacementGroup(pg, 1)).Remote(V(1))); err == nil || !strings.Contains(err.Error(), "bundle index 1 out of range") {
		t.Errorf("bundle index out of range: %v", err)
	}
	if _, err := Get(ctx, inc.Options(InPlacementGroup(nil, 0)).Remote(V(1))); err == nil {
		t.Error("a nil group: no error")
	}
	if _, err := GetPlacementGroup(ctx, "no such group"); !errors.Is(err, ErrUnknownPlacementGroup) {
		t.Errorf("GetPlacementGroup of an unknown name: %v", err)
	}
}

func TestPlacementGroupsInTheStateAPI(t *testing.T) {
	ctx := ctxT(t)
	pg := newGroup(t, []Bundle{{"CPU": 0.5}, {"CPU": 0.25}}, StrategySpread, Name("api-group"))
	if err := pg.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	stuck := newGroup(t, []Bundle{{"GPU": 1}}, StrategyPack, Name("api-stuck"))
	var l apiList
	if code := apiGet(t, "/api/v0/placement_groups?filter=name%3Dapi-group&filter=state%3DCREATED", &l); code != 200 {
		t.Fatalf("GET placement_groups: %d", code)
	}
	if len(l.Result) != 1 {
		t.Fatalf("filtered by name: %v", l.Result)
	}
	r := l.Result[0]
	bundles, _ := r["bundles"].([]any)
	if r["placement_group_id"] != pg.ID() || r["state"] != "CREATED" || r["strategy"] != "SPREAD" || len(bundles) != 2 {
		t.Fatalf("record: %v", r)
	}
	nodes, err := Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := bundles[1].(map[string]any); b["node_id"] != nodes[0].ID || fmt.Sprint(b["resources"]) != "map[CPU:0.25]" {
		t.Fatalf("bundle 1: %v", b)
	}
	// Why it waits is found by the manager's next round, on its own.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var one apiList
		if code := apiGet(t, "/api/v0/placement_groups?filter=placement_group_id%3D"+stuck.ID(), &one); code != 200 || len(one.Result) != 1 {
			t.Fatalf("GET the stuck group: %d %v", code, one.Result)
		}
		r := one.Result[0]
		if r["state"] != "PENDING" {
			t.Fatalf("stuck group: %v", r)
		}
		if strings.Contains(fmt.Sprint(r["reason"]), "no node can ever hold bundle 0 {GPU=1}") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stuck group, with no reason: %v", r)
		}
		time.Sleep(20 * time.Millisecond) // the manager's rounds run every 250 ms
	}
}

// fanIn gets inc(x) from inside a task.
var fanIn = Func1(func(x int) int {
	v, err := Get(context.Background(), inc.Remote(V(x)))
	if err != nil {
		panic(err)
	}
	return v
})

func TestPlacementGroupCapturesChildTasks(t *testing.T) {
	ctx := ctxT(t)
	// The group takes both CPUs: a child that asked for the node's own
	// would wait for ever; captured, it runs on the group's.
	pg := newGroup(t, []Bundle{{"CPU": 2}}, StrategyStrictPack)
	if err := pg.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if v, err := Get(wctx, fanIn.Options(InPlacementGroup(pg, 0), CaptureChildTasks()).Remote(V(41))); err != nil || v != 42 {
		t.Fatalf("a child of a capturing task: %v, %v", v, err)
	}
	if _, err := Get(ctx, inc.Options(CaptureChildTasks()).Remote(V(1))); err == nil || !strings.Contains(err.Error(), "CaptureChildTasks needs InPlacementGroup") {
		t.Fatalf("CaptureChildTasks alone: %v", err)
	}
}
