package rayo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// gpuSeen is what a task saw of its GPUs: CUDA_VISIBLE_DEVICES (or
// "unset") and GPUIDs.
type gpuSeen struct {
	Env string
	IDs []int
}

func seeGPUs() gpuSeen {
	env, ok := os.LookupEnv("CUDA_VISIBLE_DEVICES")
	if !ok {
		env = "unset"
	}
	return gpuSeen{env, GPUIDs()}
}

// meet waits, in a task, until n tasks have reached dir: tasks that meet
// run at once.
func meet(dir string, n int) error {
	f, err := os.CreateTemp(dir, "here-")
	if err != nil {
		return err
	}
	f.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		if len(entries) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d tasks met", len(entries), n)
		}
		time.Sleep(5 * time.Millisecond) // the others are other processes
	}
}

type gpuHolder struct{}

func (gpuHolder) See() gpuSeen { return seeGPUs() }

var (
	gpuTask    = Func2E(func(dir string, n int) (gpuSeen, error) { return seeGPUs(), meet(dir, n) })
	plainTask  = Func0(seeGPUs)
	newHolder  = Actor0(func() gpuHolder { return gpuHolder{} })
	holderSees = Method0(newHolder, gpuHolder.See)
)

func TestGPUsAreAssignedAndVisible(t *testing.T) {
	restart(t, NumCPUs(4), NumGPUs(2))
	ctx := ctxT(t)
	if total, err := ClusterResources(ctx); err != nil || total["GPU"] != 2 {
		t.Fatalf("ClusterResources: %v %v", total, err)
	}
	checkOneGPUEach(t, ctx, t.TempDir())
	checkAllOrNoGPUs(t, ctx, t.TempDir())
	dir := t.TempDir()
	checkHalfGPUs(t, ctx, dir)
	checkActorKeepsGPU(t, ctx)
	checkGPUBundle(t, ctx)

	// Bad input: a clear error at submission, and more GPUs than any node has.
	if _, err := Get(ctx, gpuTask.Options(NumGPUs(1.5)).Remote(V(dir), V(1))); err == nil || !strings.Contains(err.Error(), "whole number") {
		t.Errorf("NumGPUs(1.5): %v", err)
	}
	if _, err := Get(ctx, gpuTask.Options(NumGPUs(3)).Remote(V(dir), V(1))); !errors.Is(err, ErrInfeasible) {
		t.Errorf("3 GPUs on a 2-GPU node: %v", err)
	}
}

// checkOneGPUEach checks that two one-GPU tasks at once, meeting in dir,
// get a GPU each.
func checkOneGPUEach(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	a, b := gpuTask.Options(NumGPUs(1)).Remote(V(dir), V(2)), gpuTask.Options(NumGPUs(1)).Remote(V(dir), V(2))
	seen, err := GetAll(ctx, []Ref[gpuSeen]{a, b})
	if err != nil {
		t.Fatal(err)
	}
	envs := []string{seen[0].Env, seen[1].Env}
	sort.Strings(envs)
	if !slices.Equal(envs, []string{"0", "1"}) || len(seen[0].IDs) != 1 || fmt.Sprint(seen[0].IDs[0]) != seen[0].Env {
		t.Fatalf("two 1-GPU tasks saw %+v", seen)
	}
}

// checkAllOrNoGPUs checks that a two-GPU task sees both GPUs, and that one
// that asks for none sees none.
func checkAllOrNoGPUs(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	both, err := Get(ctx, gpuTask.Options(NumGPUs(2)).Remote(V(dir), V(1)))
	if err != nil || both.Env != "0,1" || !slices.Equal(both.IDs, []int{0, 1}) {
		t.Fatalf("a 2-GPU task saw %+v (%v)", both, err)
	}
	none, err := Get(ctx, plainTask.Remote())
	if err != nil || none.Env != "unset" || none.IDs != nil {
		t.Fatalf("a task without GPUs saw %+v (%v)", none, err)
	}
}

// checkHalfGPUs checks shares of one GPU: four half-GPU tasks at once,
// meeting in dir, use both GPUs, two each.
func checkHalfGPUs(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	var halves []Ref[gpuSeen]
	for range 4 {
		halves = append(halves, gpuTask.Options(NumGPUs(0.5)).Remote(V(dir), V(4)))
	}
	got, err := GetAll(ctx, halves)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, s := range got {
		per[s.Env]++
	}
	if per["0"] != 2 || per["1"] != 2 {
		t.Fatalf("half-GPU tasks saw %+v", got)
	}
}

// checkActorKeepsGPU checks that an actor keeps its GPU for its life, and
// kills it.
func checkActorKeepsGPU(t *testing.T, ctx context.Context) {
	t.Helper()
	h := newHolder.Options(NumGPUs(1)).Remote()
	first, err := Get(ctx, holderSees.Remote(h))
	if err != nil || len(first.IDs) != 1 {
		t.Fatalf("the actor saw %+v (%v)", first, err)
	}
	for range 3 {
		if again, err := Get(ctx, holderSees.Remote(h)); err != nil || again.Env != first.Env {
			t.Fatalf("the actor's GPU changed: %+v then %+v (%v)", first, again, err)
		}
	}
	if err := Kill(ctx, h); err != nil {
		t.Fatal(err)
	}
}

// checkGPUBundle checks that a task in a placement group's GPU bundle gets
// a GPU too, and removes the group.
func checkGPUBundle(t *testing.T, ctx context.Context) {
	t.Helper()
	pg, err := NewPlacementGroup(ctx, []Bundle{{"CPU": 1, "GPU": 1}}, StrategyPack)
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	inGroup, err := Get(ctx, gpuTask.Options(NumGPUs(1), InPlacementGroup(pg, 0)).Remote(V(t.TempDir()), V(1)))
	if err != nil || len(inGroup.IDs) != 1 || inGroup.Env != fmt.Sprint(inGroup.IDs[0]) {
		t.Fatalf("a task in a GPU bundle saw %+v (%v)", inGroup, err)
	}
	if err := pg.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}
