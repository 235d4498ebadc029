package bench

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/rayo-dev/rayo"
)

// liveHeap is this process's heap in use after a full collection, once
// settled: objects released by what ran before (refs whose cleanups run
// after a collection, answers still arriving) are freed by further
// collections, so it collects until the heap stops shrinking by more than
// 1%, at most ten times.
func liveHeap() uint64 {
	read := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h := read()
	for range 10 {
		next := read()
		if next+h/100 >= h {
			return next
		}
		h = next
	}
	return h
}

// memory_per_actor: the driver's heap (runtime and, in an embedded
// cluster, the raylet included) per live actor, after a collection:
// cfg.MemoryActors actors are created and each is called once, handles
// held, and the heap is compared with the heap before. Every actor is a
// worker process of its own, so the figure is what each connection,
// queue and record costs the driver. The note gives the time the actors
// took to start and answer.
func memoryPerActor(e *env) (float64, string, error) {
	// Garbage of what ran before (pooled buffers, refs whose cleanups run
	// late) may be freed during a measurement, which then reads too low:
	// such a measurement is made again, up to three times.
	var err error
	for range 3 {
		var per float64
		var note string
		if per, note, err = measureActors(e); err == nil || !errors.Is(err, errDisturbed) {
			return per, note, err
		}
	}
	return 0, "", err
}

// errDisturbed is a heap measurement that went down.
var errDisturbed = errors.New("the measurement was disturbed")

// measureActors is one measurement of memory_per_actor.
func measureActors(e *env) (float64, string, error) {
	n := e.cfg.MemoryActors
	// One actor first, so that what every actor shares (the method's
	// registration, the worker pool's records) is in place.
	warm := newServer.Remote()
	defer warm.Release()
	if _, err := rayo.Get(e.ctx, smallValue.Remote(warm)); err != nil {
		return 0, "", err
	}
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
	if per <= 0 {
		return 0, "", fmt.Errorf("the heap shrank by %d bytes while %d actors were created: %w", before-after, n, errDisturbed)
	}
	return per, fmt.Sprintf("%d live actors, %.0f KiB each; created and called in %v", n, per/1024, took.Round(time.Millisecond)), nil
}
