package raylet

import (
	"math"
	"os"
	"strings"

	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// GPU is the resource of a node's GPUs. Its quantity is a count; a lease
// that asks for some also gets which ones (their indexes on the node),
// which its worker puts in CUDA_VISIBLE_DEVICES: whole GPUs for a request
// of 1 or more, or a share of one GPU for less than 1 (several such
// leases share a GPU).
const GPU = "GPU"

// gpuPool is the share of each of the node's GPUs that is free (1: all of
// it). The quantity of GPU in the node's avail map is what the scheduler
// counts; the pool says which GPUs a lease gets. Guarded by Raylet.mu.
type gpuPool []float64

func newGPUPool(total float64) gpuPool {
	p := make(gpuPool, int(math.Floor(total+1e-9)))
	for i := range p {
		p[i] = 1
	}
	return p
}

// gpuDemand is how much GPU a lease request asks for: of the node's GPU,
// or of a placement group's (whose bundles reserved the count, but not
// which GPUs).
func gpuDemand(res []*pb.Resource) float64 {
	for _, x := range res {
		if x.Name == GPU || placement.IsWildcard(x.Name) && strings.HasPrefix(x.Name, placement.Resource(GPU, "", -1)) {
			return x.Quantity
		}
	}
	return 0
}

// take assigns GPUs for a demand of q: the lowest-numbered free whole
// GPUs for q >= 1, or for q < 1 the GPU with the least free share that
// still fits (so shares pack together). It reports false, changing
// nothing, when the free GPUs cannot hold q.
func (p gpuPool) take(q float64) ([]int32, float64, bool) {
	const eps = 1e-9
	switch {
	case q <= eps:
		return nil, 0, true
	case q < 1-eps:
		best := -1
		for i, free := range p {
			if free >= q-eps && (best < 0 || free < p[best]) {
				best = i
			}
		}
		if best < 0 {
			return nil, 0, false
		}
		p[best] -= q
		return []int32{int32(best)}, q, true
	}
	want := int(math.Ceil(q - eps))
	var ids []int32
	for i, free := range p {
		if len(ids) < want && free >= 1-eps {
			ids = append(ids, int32(i))
		}
	}
	if len(ids) < want {
		return nil, 0, false
	}
	for _, i := range ids {
		p[i] = 0
	}
	return ids, 1, true
}

// give returns what take assigned.
func (p gpuPool) give(ids []int32, share float64) {
	for _, i := range ids {
		if int(i) < len(p) {
			p[i] = math.Min(1, p[i]+share)
		}
	}
}

// DetectGPUs counts the GPUs the NVIDIA driver lists
// (/proc/driver/nvidia/gpus has a folder per GPU); 0 without the driver.
func DetectGPUs() int {
	entries, err := os.ReadDir("/proc/driver/nvidia/gpus")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			n++
		}
	}
	return n
}
