package rayo

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestDriverHeapPerActor holds live actors, each called once, and checks
// what they cost this process's heap (driver and embedded raylet): at most
// 50 KB each (issue 12; it was about 600 KB, mostly a 256 KiB read buffer
// per connection).
func TestDriverHeapPerActor(t *testing.T) {
	const n, limit = 40, 50_000
	restart(t, NumCPUs(2))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// One actor first, so that what every actor shares is in place.
	first := newCounter.Remote()
	if _, err := Get(ctx, incr.Remote(first)); err != nil {
		t.Fatal(err)
	}
	before := heap()
	actors := make([]Actor[*Counter], n)
	refs := make([]Ref[int], n)
	for i := range actors {
		actors[i] = newCounter.Remote()
		refs[i] = incr.Remote(actors[i])
	}
	vs, err := GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if v != 1 {
			t.Fatalf("actor %d: first Incr gave %d, want 1", i, v)
		}
	}
	refs, vs = nil, nil
	per := (int64(heap()) - int64(before)) / n
	t.Logf("driver heap per live actor: %d bytes", per)
	if per > limit {
		t.Errorf("driver heap per live actor is %d bytes, want at most %d", per, limit)
	}
	runtime.KeepAlive(actors)
	runtime.KeepAlive(first)
	for _, a := range append(actors, first) {
		a.Release()
	}
}
