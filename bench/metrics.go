package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"github.com/rayo-dev/rayo"
)

// Remote functions of the suite, declared at package level so that the
// worker processes (this executable again) register them too.
var (
	// noop is Ray's small_value: the cheapest task there is.
	noop = rayo.Func0(func() int { return 0 })
	// inc makes the chains of memory_per_task_10k_graph.
	inc = rayo.Func1(func(x int) int { return x + 1 })
	// clientBatch is one client of multi_client_tasks_async: it submits k
	// tiny tasks itself, gets their results, and returns k.
	clientBatch = rayo.Func1E(func(k int) (int, error) {
		refs := make([]rayo.Ref[int], k)
		for i := range refs {
			refs[i] = noop.Remote()
		}
		if _, err := rayo.GetAll(context.Background(), refs); err != nil {
			return 0, err
		}
		return k, nil
	})
)

// single_client_tasks_sync: submit one tiny task and wait for its result,
// again and again (Ray: ray.get(small_value.remote())).
func tasksSync(e *env) (float64, string, error) {
	v, err := e.rate(1, func() error {
		_, err := rayo.Get(e.ctx, noop.Remote())
		return err
	})
	return v, perCall(v), err
}

// submitBatch submits cfg.Batch tiny tasks.
func (e *env) submitBatch() []rayo.Ref[int] {
	refs := make([]rayo.Ref[int], e.cfg.Batch)
	for i := range refs {
		refs[i] = noop.Remote()
	}
	return refs
}

// single_client_tasks_async: submit a batch of tiny tasks, then get them
// all; tasks per second (Ray: ray.get([small_value.remote() for _ in
// range(1000)])).
func tasksAsync(e *env) (float64, string, error) {
	v, err := e.rate(float64(e.cfg.Batch), func() error {
		_, err := rayo.GetAll(e.ctx, e.submitBatch())
		return err
	})
	return v, perCall(v), err
}

// single_client_tasks_and_get_batch: the same work as tasks_async, counted
// in batches per second (Ray's figure for it).
func tasksAndGetBatch(e *env) (float64, string, error) {
	v, err := e.rate(1, func() error {
		_, err := rayo.GetAll(e.ctx, e.submitBatch())
		return err
	})
	return v, fmt.Sprintf("%s per %d tasks", dur(v), e.cfg.Batch), err
}

// multi_client_tasks_async: Ray runs several clients (actors, each
// submitting a batch of tiny tasks and getting them). Here the clients are
// tasks (the metric predates rayo's actors): each of cfg.Clients client
// tasks submits cfg.Batch tiny tasks from its own worker process and gets
// them. The figure counts the tiny tasks. A client blocked in Get lends its
// CPU back, so the tiny tasks get workers.
func multiClientTasksAsync(e *env) (float64, string, error) {
	v, err := e.rate(float64(e.cfg.Clients*e.cfg.Batch), func() error {
		refs := make([]rayo.Ref[int], e.cfg.Clients)
		for i := range refs {
			refs[i] = clientBatch.Remote(rayo.V(e.cfg.Batch))
		}
		vs, err := rayo.GetAll(e.ctx, refs)
		if err != nil {
			return err
		}
		for _, n := range vs {
			if n != e.cfg.Batch {
				return fmt.Errorf("a client ran %d tasks, want %d", n, e.cfg.Batch)
			}
		}
		return nil
	})
	return v, fmt.Sprintf("%d clients × %d tasks", e.cfg.Clients, e.cfg.Batch), err
}

// single_client_put_calls: Put of a small int, the ref dropped at once
// (Ray: ray.put(0)); the runtime frees it when the garbage collector finds
// the ref, and that cost is part of the figure.
func putCalls(e *env) (float64, string, error) {
	v, err := e.rate(1, func() error {
		return rayo.Put(e.ctx, 0).Err()
	})
	return v, perCall(v), err
}

// single_client_get_calls: Get of the same small, ready ref, again and
// again (Ray: ray.get(value) of a ray.put(0)).
func getCalls(e *env) (float64, string, error) {
	ref := rayo.Put(e.ctx, 0)
	if err := ref.Err(); err != nil {
		return 0, "", err
	}
	defer ref.Release()
	v, err := e.rate(1, func() error {
		x, err := rayo.Get(e.ctx, ref)
		if err == nil && x != 0 {
			err = fmt.Errorf("get returned %d, want 0", x)
		}
		return err
	})
	return v, perCall(v), err
}

// single_client_put_gigabytes: Put of a large []byte (cfg.PutBytes, 256
// MiB by default) into the shared-memory store, the ref released at once so
// the space is reused; bytes per second (1 GB = 1e9 bytes, as memcpy).
func putGigabytes(e *env) (float64, string, error) {
	data := make([]byte, e.cfg.PutBytes)
	for i := range data {
		data[i] = byte(i)
	}
	// The first Put lands on store pages never touched before (the store
	// is a sparse file in /dev/shm): timed apart, as a note.
	start := time.Now()
	first := rayo.Put(e.ctx, data)
	if err := first.Err(); err != nil {
		return 0, "", err
	}
	cold := float64(len(data)) / 1e9 / time.Since(start).Seconds()
	first.Release()
	v, err := e.rate(float64(len(data))/1e9, func() error {
		r := rayo.Put(e.ctx, data)
		if err := r.Err(); err != nil {
			return err
		}
		r.Release()
		return nil
	})
	return v, fmt.Sprintf("%s per %s put; first put (cold store pages) %.2f GB/s", dur(v/(float64(len(data))/1e9)), size(len(data)), cold), err
}

// put1GiBFloat64 stores cfg.GetBytes of float64s and drops the program's
// own copy, so that the stored one is all there is.
func put1GiBFloat64(e *env) (rayo.Ref[[]float64], int, time.Duration, error) {
	n := int(e.cfg.GetBytes / 8)
	data := make([]float64, n)
	for i := range data {
		data[i] = float64(i)
	}
	start := time.Now()
	ref := rayo.Put(e.ctx, data)
	if err := ref.Err(); err != nil {
		return ref, 0, 0, err
	}
	putTime := time.Since(start)
	data = nil
	runtime.GC()
	return ref, n, putTime, nil
}

// checkFloats checks what a get of put1GiBFloat64's object returned.
func checkFloats(v []float64, n int) error {
	if len(v) != n || v[n-1] != float64(n-1) {
		return fmt.Errorf("get returned %d values ending in %v, want %d ending in %d", len(v), v[len(v)-1], n, n-1)
	}
	return nil
}

// single_client_get_1GiB_float64: Ray's zero-copy get of a large numeric
// array, which in rayo is GetView: gets per second, each a view of the
// same stored object (the target's condition: no copy was made).
func get1GiBFloat64(e *env) (float64, string, error) {
	ref, n, putTime, err := put1GiBFloat64(e)
	if err != nil {
		return 0, "", err
	}
	defer ref.Release()
	first, err := rayo.GetView(e.ctx, ref)
	if err != nil {
		return 0, "", err
	}
	defer first.Release()
	if err := checkFloats(first.Value(), n); err != nil {
		return 0, "", err
	}
	var last []float64
	v, err := e.rate(1, func() error {
		x, err := rayo.GetView(e.ctx, ref)
		if err == nil {
			last = x.Value()
			x.Release()
		}
		return err
	})
	if err != nil {
		return 0, "", err
	}
	e.ok = unsafe.SliceData(first.Value()) == unsafe.SliceData(last) && len(last) == n
	how := "zero-copy"
	if !e.ok {
		how = "COPIED"
	}
	return v, fmt.Sprintf("GetView: %s per get of %s, %s (put took %v)", dur(v), size(e.cfg.GetBytes), how, putTime.Round(time.Millisecond)), nil
}

// single_client_get_1GiB_float64_copied: the same object read with Get,
// which copies it into memory the caller owns: GB/s, against memcpy.
func get1GiBFloat64Copied(e *env) (float64, string, error) {
	ref, n, _, err := put1GiBFloat64(e)
	if err != nil {
		return 0, "", err
	}
	defer ref.Release()
	v, err := e.rate(float64(e.cfg.GetBytes)/1e9, func() error {
		x, err := rayo.Get(e.ctx, ref)
		if err == nil {
			err = checkFloats(x, n)
		}
		return err
	})
	if err != nil {
		return 0, "", err
	}
	return v, fmt.Sprintf("Get: %s per get of %s, a copy", dur(v/(float64(e.cfg.GetBytes)/1e9)), size(e.cfg.GetBytes)), nil
}

// single_client_wait_1k_refs, as Ray defines it: submit a batch of tiny
// tasks, then call Wait with numReturns=1 on the shrinking list until
// every ref has come back; rounds per second.
func wait1kRefs(e *env) (float64, string, error) {
	v, err := e.rate(1, func() error {
		notReady := e.submitBatch()
		for len(notReady) > 0 {
			var ready []rayo.Ref[int]
			var err error
			ready, notReady, err = rayo.Wait(e.ctx, notReady, 1)
			if err != nil {
				return err
			}
			if len(ready) != 1 {
				return fmt.Errorf("wait returned %d ready refs, want 1", len(ready))
			}
		}
		return nil
	})
	return v, fmt.Sprintf("%s per round of %d Waits", dur(v), e.cfg.Batch), err
}

// makeRefs is the task of get_object_containing_10k_refs: it puts n small
// objects (owned by the worker) and returns the refs.
var makeRefs = rayo.Func1(func(n int) []rayo.Ref[int] {
	refs := make([]rayo.Ref[int], n)
	for i := range refs {
		refs[i] = rayo.Put(context.Background(), i)
	}
	return refs
})

// single_client_get_object_containing_10k_refs, as Ray defines it: a task
// puts 10,000 objects and returns the list of their refs; the driver Gets
// that list again and again (the refs inside come back as refs, borrowed
// from the worker that owns them); Gets per second.
func getObjectContaining10kRefs(e *env) (float64, string, error) {
	outer := makeRefs.Remote(rayo.V(e.cfg.ContainedRefs))
	defer outer.Release()
	first, err := rayo.Get(e.ctx, outer)
	if err != nil {
		return 0, "", err
	}
	if v, err := rayo.Get(e.ctx, first[len(first)-1]); err != nil || v != len(first)-1 {
		return 0, "", fmt.Errorf("a contained ref gave %v, %v; want %d", v, err, len(first)-1)
	}
	v, err := e.rate(1, func() error {
		got, err := rayo.Get(e.ctx, outer)
		if err == nil && len(got) != e.cfg.ContainedRefs {
			err = fmt.Errorf("get returned %d refs, want %d", len(got), e.cfg.ContainedRefs)
		}
		return err
	})
	return v, fmt.Sprintf("%s per get of %d refs", dur(v), e.cfg.ContainedRefs), err
}

// memory_per_task_10k_graph: the driver's heap (runtime and raylet
// included) per task while a graph of 10,000 tasks is in flight: 100
// chains of 100 dependent tasks, all refs held, measured right after
// submission. The note gives the heap per object once all have finished,
// refs still held.
func memoryPerTask(e *env) (float64, string, error) {
	const chains, length = 100, 100
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perTask, perDone []float64
	deadline := time.Now().Add(e.cfg.Duration)
	for round := 0; round < 1 || (round < 5 && time.Now().Before(deadline)); round++ {
		refs := make([]rayo.Ref[int], 0, chains*length)
		before := heap()
		for range chains {
			r := inc.Remote(rayo.V(0))
			refs = append(refs, r)
			for range length - 1 {
				r = inc.Remote(r)
				refs = append(refs, r)
			}
		}
		submitted := heap()
		for c := range chains {
			v, err := rayo.Get(e.ctx, refs[(c+1)*length-1])
			if err != nil {
				return 0, "", err
			}
			if v != length {
				return 0, "", fmt.Errorf("chain ended in %d, want %d", v, length)
			}
		}
		done := heap()
		perTask = append(perTask, float64(int64(submitted)-int64(before))/float64(len(refs)))
		perDone = append(perDone, float64(int64(done)-int64(before))/float64(len(refs)))
		for _, r := range refs {
			r.Release()
		}
		runtime.KeepAlive(refs)
	}
	return median(perTask), fmt.Sprintf("%.0f bytes/object once finished", median(perDone)), nil
}

// placement_group_create/removal, as Ray defines it: create 100 placement
// groups of one small bundle, wait until each is ready, then remove them
// all; groups per second.
func placementGroupCreateRemoval(e *env) (float64, string, error) {
	const groups = 100
	bundle := []rayo.Bundle{{"CPU": 0.001}}
	v, err := e.rate(groups, func() error {
		pgs := make([]*rayo.PlacementGroup, groups)
		for i := range pgs {
			pg, err := rayo.NewPlacementGroup(e.ctx, bundle, rayo.StrategyPack)
			if err != nil {
				return err
			}
			pgs[i] = pg
		}
		for _, pg := range pgs {
			if err := pg.Ready(e.ctx); err != nil {
				return err
			}
		}
		for _, pg := range pgs {
			if err := pg.Remove(e.ctx); err != nil {
				return err
			}
		}
		return nil
	})
	return v, fmt.Sprintf("batches of %d", groups), err
}
