package rayo

import (
	"context"
	"fmt"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Put stores v as an immutable object and returns a ref to it. Small
// values stay in this process's memory; large ones go to the node's
// shared-memory store. If v cannot be stored (it holds a channel or a
// function, or the store is full) the ref's Err says so, and Get returns
// the same error.
//
// A value is stored whole or refused: a struct with an unexported field,
// anywhere in v, is refused with ErrUnserializable naming the type and the
// field (e.g. main.Point.x), since that field could not be sent. Fine are:
// fields tagged `cbor:"-"` (left out on purpose), zero-size fields such as
// a blank struct{} carrying cbor:",toarray", the exported fields of
// embedded structs, and types with their own encoding (a MarshalCBOR or
// MarshalBinary method: time.Time, Ref, Actor) or *big.Int. Functions
// whose parameters or results have such a type are refused from their
// declaration on (every Remote fails). An object larger than the whole
// store fails with ErrStoreFull, as a full store does.
func Put[T any](ctx context.Context, v T) Ref[T] {
	rt := current()
	if rt == nil {
		return Ref[T]{err: ErrNotInitialized}
	}
	p, contained, err := encode(v)
	if err != nil {
		return Ref[T]{err: fmt.Errorf("rayo: Put: %w", err)}
	}
	h, err := rt.Put(ctx, p, contained)
	if err != nil {
		return Ref[T]{err: fmt.Errorf("rayo: Put: %w", err)}
	}
	return Ref[T]{h: h}
}

func encode(v any) (codec.Payload, []*core.Handle, error) {
	contained, err := nestedRefs(v)
	if err != nil {
		return codec.Payload{}, nil, err
	}
	p, err := codec.Encode(v)
	if err != nil {
		return codec.Payload{}, nil, err
	}
	return p, contained, nil
}

// Get waits for the object r refers to and returns its value. A deadline
// or cancellation of ctx stops the wait (Ray's timeout). A failed task
// gives a *TaskError.
//
// The value belongs to the caller: it is a copy that never changes, also
// after the object is gone (see View for the rule, and GetView to read a
// large object without a copy).
func Get[T any](ctx context.Context, r Ref[T]) (T, error) {
	var zero T
	h, err := r.handle()
	if err != nil {
		return zero, err
	}
	loc, err := h.Runtime().Get(ctx, h)
	if err != nil {
		return zero, err
	}
	return decodeValue[T](ctx, h, loc)
}

func decodeValue[T any](ctx context.Context, h *core.Handle, loc *pb.Locator) (T, error) {
	b, release, err := h.Runtime().Bytes(ctx, h.ID, h.Owner, loc)
	if err != nil {
		var zero T
		return zero, publicErr(err)
	}
	defer release()
	v, err := codec.DecodeValue[T](b)
	if err != nil {
		return v, fmt.Errorf("rayo: Get %s: %w", h.ID, err)
	}
	return v, nil
}

// GetAll waits for every ref and returns their values in order. The first
// failure stops it.
func GetAll[T any](ctx context.Context, refs []Ref[T]) ([]T, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	hs := make([]*core.Handle, len(refs))
	for i, r := range refs {
		h, err := r.handle()
		if err != nil {
			return nil, fmt.Errorf("rayo: GetAll: ref %d: %w", i, err)
		}
		hs[i] = h
	}
	locs, err := hs[0].Runtime().GetMany(ctx, hs)
	if err != nil {
		return nil, err
	}
	out := make([]T, len(refs))
	for i, loc := range locs {
		if out[i], err = decodeValue[T](ctx, hs[i], loc); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Wait returns once numReturns of refs are done (ready or failed), or ctx
// ends: the done refs and the others, each in the order given. When ctx
// ends first, ready holds fewer than numReturns refs and err is nil, as a
// Ray timeout; an error means the refs could not be waited on.
func Wait[T any](ctx context.Context, refs []Ref[T], numReturns int) (ready, notReady []Ref[T], err error) {
	rt := current()
	if rt == nil {
		return nil, nil, ErrNotInitialized
	}
	for i, r := range refs {
		if _, err := r.handle(); err != nil {
			return nil, nil, fmt.Errorf("rayo: Wait: ref %d: %w", i, err)
		}
		if r.h == nil {
			return nil, nil, fmt.Errorf("rayo: Wait: ref %d: %w", i, core.ErrNilRef)
		}
	}
	// No slice of handles: a loop of Wait(refs, 1) calls this once per ref.
	ri, err := rt.WaitIndexed(ctx, len(refs), numReturns, func(i int) *core.Handle { return refs[i].h })
	if err != nil {
		return nil, nil, err
	}
	ready = make([]Ref[T], len(ri))
	notReady = make([]Ref[T], 0, len(refs)-len(ri))
	j := 0
	for i, r := range refs {
		if j < len(ri) && ri[j] == i {
			ready[j] = r
			j++
		} else {
			notReady = append(notReady, r)
		}
	}
	return ready, notReady, nil
}

// Cancel stops the task that makes r. A task still waiting never runs; a
// running one has its worker process stopped (Go cannot interrupt a
// function). Get on its results then returns ErrTaskCancelled. Cancelling
// a finished task does nothing.
//
// Cancel returns once the task has stopped (or finished), or when ctx
// ends first, with ctx's error: the task is then still being stopped. A
// ctx that has already ended cancels nothing.
func Cancel[T any](ctx context.Context, r Ref[T]) error {
	h, err := r.handle()
	if err != nil {
		return err
	}
	if err := h.Runtime().Cancel(ctx, h); err != nil {
		return fmt.Errorf("rayo: Cancel: %w", err)
	}
	return nil
}
