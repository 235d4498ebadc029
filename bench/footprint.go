package bench

import (
	"fmt"
	"runtime"
	"time"

	"github.com/rayo-dev/rayo"
)

// liveHeap is this process's heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// memory_per_actor: the driver's heap (runtime and, in an embedded
// cluster, the raylet included) per live actor, after a collection:
// cfg.MemoryActors actors are created and each is called once, handles
// held, and the heap is compared with the heap before. Every actor is a
// worker process of its own, so the figure is what each connection,
// queue and record costs the driver. The note gives the time the actors
// took to start and answer.
func memoryPerActor(e *env) (float64, string, error) {
	n := e.cfg.MemoryActors
	before := liveHeap()
	start := time.Now()
	actors := make([]rayo.Actor[*server], n)
	defer func() {
		for _, a := range actors {
			a.Release()
		}
	}()
	for i := range actors {
		actors[i] = newServer.Remote()
		if err := actors[i].Err(); err != nil {
			return 0, "", fmt.Errorf("creating actor %d: %w", i, err)
		}
	}
	refs := make([]rayo.Ref[int], n)
	for i, a := range actors {
		refs[i] = smallValue.Remote(a)
	}
	vs, err := rayo.GetAll(e.ctx, refs)
	if err != nil {
		return 0, "", err
	}
	for i, v := range vs {
		if v != 0 {
			return 0, "", fmt.Errorf("actor %d answered %d, want 0", i, v)
		}
	}
	took := time.Since(start)
	for _, r := range refs {
		r.Release()
	}
	refs, vs = nil, nil
	after := liveHeap()
	runtime.KeepAlive(actors)
	per := float64(int64(after)-int64(before)) / float64(n)
	return per, fmt.Sprintf("%d live actors, %.0f KiB each; created and called in %v", n, per/1024, took.Round(time.Millisecond)), nil
}
