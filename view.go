package rayo

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
)

// View is a read-only, zero-copy view of an object: see GetView, AsView
// and the package documentation's "Memory handed to your code". Copies of a
// View share it: releasing one releases all.
type View[T any] struct{ s *viewState[T] }

type viewState[T any] struct {
	val      T
	released atomic.Bool
	end      func() // lets the object go; nil when nothing holds it
	cleanup  runtime.Cleanup
}

// Value is the viewed value. Slices and strings in it point into the
// object store and stay valid until the View is released; Value panics
// once it is, since what it would return may already hold other data.
func (v View[T]) Value() T {
	switch {
	case v.s == nil:
		panic("rayo: Value of a zero View")
	case v.s.released.Load():
		panic("rayo: View used after Release: the object's memory may have been reused")
	}
	return v.s.val
}

// Release ends the view: the object may then be freed, spilled or have its
// memory reused. It is safe to call more than once.
func (v View[T]) Release() {
	if v.s == nil || !v.s.released.CompareAndSwap(false, true) {
		return
	}
	v.s.cleanup.Stop()
	if v.s.end != nil {
		v.s.end()
	}
}

// Released reports whether the view has ended.
func (v View[T]) Released() bool { return v.s == nil || v.s.released.Load() }

func (v View[T]) String() string {
	if v.Released() {
		return "View(released)"
	}
	return fmt.Sprintf("View(%v)", v.s.val)
}

// GetView waits for the object r refers to, as Get does, and returns a
// zero-copy view of its value: large numeric slices and []byte are not
// copied out of the shared-memory store but read where they lie, through
// a read-only mapping. The object stays pinned (not freed, evicted,
// spilled or reused) until the View is released or unreachable, even if
// every Ref to it is gone. Small objects, kept in their owner's memory,
// are copied as Get copies them.
func GetView[T any](ctx context.Context, r Ref[T]) (View[T], error) {
	h, err := r.handle()
	if err != nil {
		return View[T]{}, err
	}
	rt := h.Runtime()
	hold := rt.HandleFor(h.ID, h.Owner) // the view's own reference
	loc, err := rt.Get(ctx, hold)
	if err != nil {
		hold.Release()
		return View[T]{}, err
	}
	b, unpin, err := rt.Bytes(ctx, hold.ID, hold.Owner, loc)
	if err != nil {
		hold.Release()
		return View[T]{}, publicErr(err)
	}
	end := func() { unpin(); hold.Release() }
	s := &viewState[T]{end: end}
	if loc.InStore {
		err = codec.DecodeView(b, &s.val)
	} else {
		err = codec.Decode(b, &s.val)
	}
	if err != nil {
		end()
		return View[T]{}, fmt.Errorf("rayo: GetView %s: %w", hold.ID, err)
	}
	s.cleanup = runtime.AddCleanup(s, func(end func()) { end() }, end)
	return View[T]{s}, nil
}

// AsView passes the object r refers to as an argument of type View[T],
// which the task reads without a copy while it runs:
//
//	var sum = rayo.Func1(func(v rayo.View[[]float64]) float64 { ... })
//	sum.Remote(rayo.AsView(ref))
//
// To pass a value, Put it first.
func AsView[T any](r Ref[T]) Arg[View[T]] { return viewArg[T]{r} }

type viewArg[T any] struct{ r Ref[T] }

func (x viewArg[T]) arg() argValue { return x.r.arg() }

// argViewer is implemented by *View[T]: a task's parameter decoded as a
// view of its argument's bytes.
type argViewer interface {
	viewArg(ctx context.Context, b []byte) error
}

func (v *View[T]) viewArg(ctx context.Context, b []byte) error {
	s := &viewState[T]{}
	if err := codec.DecodeView(b, &s.val); err != nil {
		return err
	}
	if sc := core.TaskScopeOf(ctx); sc != nil {
		sc.OnEnd(func() { s.released.Store(true) })
	}
	v.s = s
	return nil
}

// MarshalCBOR encodes the viewed value, so that a View inside another
// value travels as the value itself. It fails once the View is released.
func (v View[T]) MarshalCBOR() ([]byte, error) {
	if v.Released() {
		return nil, errors.New("rayo: cannot send a released View")
	}
	return cbor.Marshal(v.s.val)
}

// UnmarshalCBOR decodes a value sent as a View into a View of a copy the
// receiver owns.
func (v *View[T]) UnmarshalCBOR(b []byte) error {
	s := &viewState[T]{}
	if err := cbor.Unmarshal(b, &s.val); err != nil {
		return err
	}
	v.s = s
	return nil
}
