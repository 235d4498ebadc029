package rayo

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
)

// Ref is a reference to an immutable object of type T: the future result
// of a task, or a value stored with Put. Refs are cheap to copy; all copies
// refer to the same object, which lives while any copy is reachable (or
// until Release).
//
// A Ref can be passed to a remote function in place of a value of type T,
// and can travel inside other values (a struct field, a slice element): it
// stays a Ref there, and the receiver can Get it.
type Ref[T any] struct {
	h   *core.Handle
	err error // why the submission that made this ref failed
}

// ObjectRef is what every Ref[T] has, whatever T is.
type ObjectRef interface {
	// ID is the object's identifier in hex.
	ID() string
	// Err reports a failure to submit the task or store the value, at once
	// and without blocking; Get reports it too.
	Err() error
	handle() (*core.Handle, error)
}

// Arg is an argument of a remote function of type T: a value (V) or a Ref.
type Arg[T any] interface {
	arg() argValue
}

type argValue struct {
	val any
	h   *core.Handle
	err error
}

// V passes a value to a remote function.
func V[T any](v T) Arg[T] { return val[T]{v} }

type val[T any] struct{ v T }

func (x val[T]) arg() argValue { return argValue{val: x.v} }

func (r Ref[T]) arg() argValue { return argValue{h: r.h, err: r.refErr()} }

func (r Ref[T]) refErr() error {
	if r.err != nil {
		return r.err
	}
	if r.h == nil {
		return core.ErrNilRef
	}
	return nil
}

func (r Ref[T]) handle() (*core.Handle, error) { return r.h, r.refErr() }

// ID is the object's identifier in hex.
func (r Ref[T]) ID() string {
	if r.h == nil {
		return ""
	}
	return r.h.ID.String()
}

// Err reports whether the task or Put that made r failed to start (for
// example because an argument could not be serialized). It does not wait:
// failures of the task itself come from Get.
func (r Ref[T]) Err() error { return r.err }

// Release drops this reference now rather than when the garbage collector
// finds it. Other copies of r become invalid too.
func (r Ref[T]) Release() { r.h.Release() }

func (r Ref[T]) String() string {
	if r.h == nil {
		return "Ref(nil)"
	}
	return fmt.Sprintf("Ref[%s](%s)", reflect.TypeFor[T](), r.h.ID)
}

// refTag marks a Ref inside a CBOR-encoded value.
const refTag = 27961

type wireRef struct {
	_     struct{} `cbor:",toarray"`
	ID    []byte
	Owner string
}

// MarshalCBOR encodes the reference (not the object) inside another value:
// CBOR tag 27961 holding [id bytes, owner address].
func (r Ref[T]) MarshalCBOR() ([]byte, error) {
	if r.h == nil {
		return nil, fmt.Errorf("rayo: cannot serialize a nil or failed Ref: %w", r.refErr())
	}
	owner := r.h.Owner
	b := make([]byte, 0, 4+1+ids.ObjectIDLen+3+len(owner))
	b = append(b, 0xd9, byte(refTag>>8), byte(refTag&0xff), 0x82, 0x40|ids.ObjectIDLen)
	b = append(b, r.h.ID[:]...)
	switch n := len(owner); {
	case n < 24:
		b = append(b, 0x60|byte(n))
	case n < 256:
		b = append(b, 0x78, byte(n))
	case n < 65536:
		b = append(b, 0x79, byte(n>>8), byte(n))
	default:
		return nil, fmt.Errorf("rayo: owner address of %d bytes", n)
	}
	return append(b, owner...), nil
}

// UnmarshalCBOR decodes a reference that traveled inside a value; the
// receiving process holds it like any other Ref.
func (r *Ref[T]) UnmarshalCBOR(b []byte) error {
	id, owner, ok := parseRef(b)
	if !ok {
		// Not the layout MarshalCBOR writes; decode it the long way.
		w, err := decodeTagged(b, refTag, "Ref")
		if err != nil {
			return err
		}
		if id, err = ids.ObjectIDFrom(w.ID); err != nil {
			return err
		}
		owner = w.Owner
	}
	rt := current()
	if rt == nil {
		return ErrNotInitialized
	}
	r.h = rt.HandleFor(id, owner)
	return nil
}

// decodeTagged reads a reference (to an object or an actor) encoded as a
// CBOR tag holding [id, owner].
func decodeTagged(b []byte, number uint64, what string) (wireRef, error) {
	var tag cbor.RawTag
	var w wireRef
	if err := cbor.Unmarshal(b, &tag); err != nil {
		return w, err
	}
	if tag.Number != number {
		return w, fmt.Errorf("rayo: not a %s (tag %d)", what, tag.Number)
	}
	err := cbor.Unmarshal(tag.Content, &w)
	return w, err
}

// parseRef reads the layout MarshalCBOR writes.
func parseRef(b []byte) (id ids.ObjectID, owner string, ok bool) {
	const head = 5 + ids.ObjectIDLen
	if len(b) < head+1 || b[0] != 0xd9 || b[1] != byte(refTag>>8) || b[2] != byte(refTag&0xff) || b[3] != 0x82 || b[4] != 0x40|ids.ObjectIDLen {
		return id, "", false
	}
	copy(id[:], b[5:head])
	rest := b[head:]
	var n, skip int
	switch {
	case rest[0]&0xe0 == 0x60 && rest[0] < 0x78:
		n, skip = int(rest[0]&0x1f), 1
	case rest[0] == 0x78 && len(rest) >= 2:
		n, skip = int(rest[1]), 2
	case rest[0] == 0x79 && len(rest) >= 3:
		n, skip = int(rest[1])<<8|int(rest[2]), 3
	default:
		return id, "", false
	}
	if len(rest) != skip+n {
		return id, "", false
	}
	return id, internOwner(rest[skip:]), true
}

var owners struct {
	sync.RWMutex
	m map[string]string
}

// internOwner returns one shared string per owner address, so 10,000 refs
// from one owner do not make 10,000 copies of its address.
func internOwner(b []byte) string {
	owners.RLock()
	s, ok := owners.m[string(b)]
	owners.RUnlock()
	if ok {
		return s
	}
	owners.Lock()
	defer owners.Unlock()
	if owners.m == nil || len(owners.m) > 4096 {
		owners.m = make(map[string]string)
	}
	s = string(b)
	owners.m[s] = s
	return s
}

// refHolder is implemented by every Ref[T], for finding refs nested in
// values.
type refHolder interface{ handle() (*core.Handle, error) }

var (
	holderType = reflect.TypeFor[refHolder]()
	mayHold    sync.Map // reflect.Type -> bool
)

// canHoldRefs reports whether values of t may contain a Ref.
func canHoldRefs(t reflect.Type) bool {
	if v, ok := mayHold.Load(t); ok {
		return v.(bool)
	}
	mayHold.Store(t, false) // breaks cycles; the final answer replaces it
	var ok bool
	switch {
	case t.Implements(holderType):
		ok = true
	default:
		switch t.Kind() {
		case reflect.Interface:
			ok = true
		case reflect.Pointer, reflect.Slice, reflect.Array:
			ok = canHoldRefs(t.Elem())
		case reflect.Map:
			ok = canHoldRefs(t.Key()) || canHoldRefs(t.Elem())
		case reflect.Struct:
			for i := 0; i < t.NumField(); i++ {
				if t.Field(i).IsExported() && canHoldRefs(t.Field(i).Type) {
					ok = true
					break
				}
			}
		}
	}
	mayHold.Store(t, ok)
	return ok
}

// nestedRefs collects the refs inside v.
func nestedRefs(v any) ([]*core.Handle, error) {
	if v == nil {
		return nil, nil
	}
	rv := reflect.ValueOf(v)
	if !canHoldRefs(rv.Type()) {
		return nil, nil
	}
	var out []*core.Handle
	var err error
	var walk func(reflect.Value, int)
	walk = func(v reflect.Value, depth int) {
		if err != nil || depth > 64 || !v.IsValid() {
			return
		}
		if v.CanInterface() && v.Type().Implements(holderType) {
			h, e := v.Interface().(refHolder).handle()
			if e != nil {
				err = e
				return
			}
			out = append(out, h)
			return
		}
		if !canHoldRefs(v.Type()) {
			return
		}
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), depth+1)
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), depth+1)
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i), depth+1)
				}
			}
		}
	}
	walk(rv, 0)
	if err != nil {
		return nil, errors.Join(ErrUnserializable, err)
	}
	return out, nil
}
