package raylet

import (
	"slices"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func TestGPUPoolAssignsWholeGPUsAndPacksShares(t *testing.T) {
	p := newGPUPool(4)
	if len(p) != 4 {
		t.Fatalf("pool of %d GPUs, want 4", len(p))
	}
	two, share, ok := p.take(2)
	if !ok || !slices.Equal(two, []int32{0, 1}) || share != 1 {
		t.Fatalf("take(2): %v %v %v", two, share, ok)
	}
	// Shares go to the GPU with the least room that fits: together.
	a, _, ok1 := p.take(0.5)
	b, _, ok2 := p.take(0.25)
	if !ok1 || !ok2 || !slices.Equal(a, []int32{2}) || !slices.Equal(b, []int32{2}) {
		t.Fatalf("shares: %v %v", a, b)
	}
	// One whole GPU is left (3); two are not.
	if _, _, ok := p.take(2); ok {
		t.Fatal("took 2 whole GPUs with one free")
	}
	if got := p; got[0] != 0 || got[1] != 0 || got[2] != 0.25 || got[3] != 1 {
		t.Fatalf("a failed take changed the pool: %v", got)
	}
	// A share larger than what GPU 2 has left goes to GPU 3.
	c, _, ok := p.take(0.5)
	if !ok || !slices.Equal(c, []int32{3}) {
		t.Fatalf("take(0.5): %v %v", c, ok)
	}
	p.give(two, 1)
	p.give(a, 0.5)
	if got, _, ok := p.take(1); !ok || !slices.Equal(got, []int32{0}) {
		t.Fatalf("after give: %v %v", got, ok)
	}
	if ids, _, ok := p.take(0); !ok || ids != nil {
		t.Fatalf("take(0): %v %v", ids, ok)
	}
	if len(newGPUPool(0)) != 0 || len(newGPUPool(2.5)) != 2 {
		t.Fatal("pool sizes")
	}
}

func TestGPUDemandOfTasksAndPlacementGroups(t *testing.T) {
	for _, tc := range []struct {
		res  []*pb.Resource
		want float64
	}{
		{[]*pb.Resource{{Name: "CPU", Quantity: 1}}, 0},
		{[]*pb.Resource{{Name: "CPU", Quantity: 1}, {Name: "GPU", Quantity: 2}}, 2},
		// In a group: the wildcard and the bundle's own name the same GPUs.
		{[]*pb.Resource{{Name: "GPU_group_0_abcd", Quantity: 0.5}, {Name: "GPU_group_abcd", Quantity: 0.5}}, 0.5},
		{[]*pb.Resource{{Name: "GPUX", Quantity: 3}}, 0},
		{[]*pb.Resource{{Name: "GPU_special_group_abcd", Quantity: 3}}, 0},
	} {
		if got := gpuDemand(tc.res); got != tc.want {
			t.Errorf("gpuDemand(%v) = %v, want %v", tc.res, got, tc.want)
		}
	}
}
