package rayo

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

var failsNow = Func0E(func() (int, error) { return 0, errors.New("no") })

// filled is n float64s all equal to x: 512 KiB for n = 1<<16, enough to
// live in the shared-memory store.
func filled(n int, x float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = x
	}
	return v
}

// allEqual reports whether every element of v is x (and v is not empty).
func allEqual(v []float64, x float64) bool {
	for _, e := range v {
		if e != x {
			return false
		}
	}
	return len(v) > 0
}

// storeEmptied waits until the store holds no object any more: the refs are
// gone and their space is free to be reused.
func storeEmptied(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for localRaylet().StoreStats().Used != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("store still holds %+v", localRaylet().StoreStats())
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond) // cleanups run on their own goroutine
	}
}

// TestGetOwnsItsValue is the aliasing case: a slice from Get keeps its
// contents after its object is freed and the store reuses the space.
func TestGetOwnsItsValue(t *testing.T) {
	ctx := ctxT(t)
	storeEmptied(t)
	r := Put(ctx, filled(1<<16, 1))
	got, err := Get(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	all, err := GetAll(ctx, []Ref[[]float64]{r})
	if err != nil {
		t.Fatal(err)
	}
	r.Release()
	storeEmptied(t)
	sevens := Put(ctx, filled(1<<16, 7)) // same size: it takes the freed space
	if v, err := Get(ctx, sevens); err != nil || !allEqual(v, 7) {
		t.Fatalf("second object: %v", err)
	}
	if !allEqual(got, 1) || !allEqual(all[0], 1) {
		t.Fatalf("a value from Get changed after its object was freed: %v %v ...", got[:2], all[0][:2])
	}
	got[0] = 3 // the caller's own: writable, and the store's copy is not changed
	if v, _ := Get(ctx, sevens); v[0] != 7 {
		t.Fatal("writing a Get result changed the object")
	}
}

var writeArg = Func1(func(v []float64) float64 {
	v[0] = 42 // the task's own copy
	return v[0] + v[1]
})

var writeView = Func1(func(v View[[]float64]) int {
	v.Value()[0] = 42 // a view is read-only: this faults
	return 0
})

var sumView = Func1(func(v View[[]float64]) float64 {
	s := 0.0
	for _, x := range v.Value() {
		s += x
	}
	return s
})

func TestTaskArgumentsAreTheirOwn(t *testing.T) {
	ctx := ctxT(t)
	r := Put(ctx, filled(1<<16, 1))
	if v, err := Get(ctx, writeArg.Remote(r)); err != nil || v != 43 {
		t.Fatalf("a task writing its argument: %v %v", v, err)
	}
	if v, err := Get(ctx, r); err != nil || !allEqual(v, 1) {
		t.Fatalf("a task's write changed the object: %v", err)
	}
	if s, err := Get(ctx, sumVec.Remote(r)); err != nil || s != 1<<16 {
		t.Fatalf("another task reads %v %v", s, err)
	}
}

func TestViewArgumentsAreReadOnly(t *testing.T) {
	ctx := ctxT(t)
	r := Put(ctx, filled(1<<16, 1))
	if s, err := Get(ctx, sumView.Remote(AsView(r))); err != nil || s != 1<<16 {
		t.Fatalf("a task reading a view: %v %v", s, err)
	}
	if s, err := Get(ctx, sumView.Remote(AsView(Put(ctx, []float64{1, 2})))); err != nil || s != 3 {
		t.Fatalf("a view of a value: %v %v", s, err)
	}
	_, err := Get(ctx, writeView.Options(MaxRetries(0)).Remote(AsView(r)))
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindPanic || !strings.Contains(te.Message, "immutable") {
		t.Fatalf("writing through a view: want a panic TaskError, got %v", err)
	}
	if v, err := Get(ctx, r); err != nil || !allEqual(v, 1) {
		t.Fatalf("object changed: %v", err)
	}
	// The worker survived the fault and runs the next task.
	if s, err := Get(ctx, sumVec.Remote(r)); err != nil || s != 1<<16 {
		t.Fatalf("after the fault: %v %v", s, err)
	}
}

// ArgKeeper is an actor that keeps what it is given.
type ArgKeeper struct {
	kept []float64
	view View[[]float64]
}

var (
	newArgKeeper = Actor0(func() *ArgKeeper { return &ArgKeeper{} })
	keep         = Method1(newArgKeeper, func(k *ArgKeeper, v []float64) int { k.kept = v; return len(v) })
	keptSum      = Method0(newArgKeeper, func(k *ArgKeeper) float64 {
		s := 0.0
		for _, x := range k.kept {
			s += x
		}
		return s
	})
	keepView     = Method1(newArgKeeper, func(k *ArgKeeper, v View[[]float64]) bool { k.view = v; return v.Released() })
	viewReleased = Method0(newArgKeeper, func(k *ArgKeeper) bool { return k.view.Released() })
)

// TestActorStateKeepsItsArgument: an actor that keeps an argument keeps
// its contents after the object is freed and its space reused; a View it
// keeps ends with the call.
func TestActorStateKeepsItsArgument(t *testing.T) {
	ctx := ctxT(t)
	k := newArgKeeper.Remote()
	defer Kill(ctx, k)
	storeEmptied(t)
	r := Put(ctx, filled(1<<16, 1))
	if n, err := Get(ctx, keep.Remote(k, r)); err != nil || n != 1<<16 {
		t.Fatalf("keep: %v %v", n, err)
	}
	if released, err := Get(ctx, keepView.Remote(k, AsView(r))); err != nil || released {
		t.Fatalf("a view during its call: released %v, %v", released, err)
	}
	r.Release()
	storeEmptied(t)
	sevens := Put(ctx, filled(1<<16, 7))
	if s, err := Get(ctx, sumVec.Remote(sevens)); err != nil || s != 7<<16 {
		t.Fatalf("the sevens: %v %v", s, err)
	}
	if s, err := Get(ctx, keptSum.Remote(k)); err != nil || s != 1<<16 {
		t.Fatalf("kept argument sums to %v (want %d): it changed with the store, %v", s, 1<<16, err)
	}
	if released, err := Get(ctx, viewReleased.Remote(k)); err != nil || !released {
		t.Fatalf("a kept view after its call: released %v, %v", released, err)
	}
}

// TestGetViewPinsItsObject: a view reads the store without a copy and
// keeps its object after every ref is gone, until it is released.
func TestGetViewPinsItsObject(t *testing.T) {
	ctx := ctxT(t)
	storeEmptied(t)
	r := Put(ctx, filled(1<<16, 1))
	v, err := GetView(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if !allEqual(v.Value(), 1) || !localRaylet().Arena().InView(uintptr(unsafe.Pointer(unsafe.SliceData(v.Value())))) {
		t.Fatal("GetView did not read the store's read-only mapping")
	}
	r.Release()
	runtime.GC()
	sevens := Put(ctx, filled(1<<16, 7))
	if !allEqual(v.Value(), 1) {
		t.Fatal("a view changed while it was held")
	}
	if used := localRaylet().StoreStats().Used; used < 2<<19 {
		t.Fatalf("store uses %d bytes: the viewed object was freed", used)
	}
	v.Release()
	v.Release() // twice is fine
	sevens.Release()
	storeEmptied(t)
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "after Release") {
			t.Fatalf("Value after Release: %v", p)
		}
	}()
	_ = v.Value()
}

// TestGetViewUnreachableFreesItsObject: a view nobody reaches lets its
// object go, like a ref.
func TestGetViewUnreachableFreesItsObject(t *testing.T) {
	ctx := ctxT(t)
	storeEmptied(t)
	func() {
		r := Put(ctx, filled(1<<16, 1))
		v, err := GetView(ctx, r)
		if err != nil || !allEqual(v.Value(), 1) {
			t.Fatalf("GetView: %v", err)
		}
	}()
	storeEmptied(t)
}

func TestGetViewSmallAndFailed(t *testing.T) {
	ctx := ctxT(t)
	v, err := GetView(ctx, Put(ctx, []float64{1, 2}))
	if err != nil || len(v.Value()) != 2 || v.Value()[1] != 2 {
		t.Fatalf("a small object's view: %v", err)
	}
	v.Release()
	if _, err := GetView(ctx, Ref[int]{}); !errors.Is(err, ErrNilRef) {
		t.Fatalf("nil ref: %v", err)
	}
	if _, err := GetView(ctx, failsNow.Remote()); !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("failed task: %v", err)
	}
	var zero View[int]
	if !zero.Released() {
		t.Fatal("a zero View is not released")
	}
}
