package codec

import (
	"fmt"
	"math/big"
	"reflect"
	"sync"
)

// The CBOR library skips unexported struct fields: a value holding one
// would come back with that field zeroed. Encode refuses such values
// instead, and CheckType lets callers refuse their types before any value
// exists. The verdict depends on the type alone, except where the type
// holds interfaces: their dynamic values are checked when encoded.

// lostField describes an unexported field that the encoding would drop.
type lostField struct {
	field string // the declaring struct type and the field, e.g. "main.Point.x"
	owner string // the declaring struct type, e.g. "main.Point"
	route string // how the field is reached from the checked type, e.g. ".Ps[].x"
}

// verdict is what the type alone says about encoding values of a type.
type verdict struct {
	lost    *lostField // non-nil: values of the type cannot be sent whole
	dynamic bool       // the type holds interfaces: values need a look
	fields  []int      // of a dynamic struct: the sent fields that need a look
}

// verdicts caches the verdict of each type.
var verdicts sync.Map // reflect.Type -> *verdict

// fine is the verdict of types whose values can always be sent.
var fine = &verdict{}

var (
	bigIntType       = reflect.TypeFor[big.Int]()
	anySliceType     = reflect.TypeFor[[]any]()
	stringAnyMapType = reflect.TypeFor[map[string]any]()
	anyAnyMapType    = reflect.TypeFor[map[any]any]()
)

// CheckType reports, wrapping ErrUnserializable, whether values of t would
// lose data when encoded because t holds (in a field, an element, behind a
// pointer) a struct with an unexported field. Fields tagged `cbor:"-"` (or
// `json:"-"`), blank and zero-size fields, unexported embedded structs
// (whose fields are checked in turn) and types with their own encoding
// (cbor.Marshaler, encoding.BinaryMarshaler, big.Int) are fine. Interfaces
// are fine here; the values they hold are checked by Encode.
func CheckType(t reflect.Type) error {
	if t == nil {
		return nil
	}
	if v := verdictOf(t); v.lost != nil {
		return v.lost.err(t.String())
	}
	return nil
}

// checkValue refuses v, wrapping ErrUnserializable, if encoding it would
// lose an unexported field. Only types holding interfaces are walked.
func checkValue(v any) error {
	t := reflect.TypeOf(v)
	if t == nil {
		return nil
	}
	vd := verdictOf(t)
	if vd.lost != nil {
		return vd.lost.err(t.String())
	}
	if !vd.dynamic {
		return nil
	}
	w := walker{root: t.String(), last: t, lastV: vd}
	return w.check(v)
}

// err describes l, found in the value at path prefix.
func (l *lostField) err(prefix string) error {
	where := ""
	if reach := prefix + l.route; reach != l.field {
		where = " (reached as " + reach + ")"
	}
	return fmt.Errorf("%w: field %s is unexported, so it would not be sent%s; export it, tag it `cbor:\"-\"` to leave it out, or give %s a MarshalCBOR or MarshalBinary method",
		ErrUnserializable, l.field, where, l.owner)
}

func verdictOf(t reflect.Type) *verdict {
	if plain(t.Kind()) {
		return fine
	}
	if v, ok := verdicts.Load(t); ok {
		return v.(*verdict)
	}
	v := &verdict{lost: findLost(t, "", map[reflect.Type]bool{})}
	if v.lost == nil && holdsInterface(t, map[reflect.Type]bool{}) {
		v.dynamic = true
		if t.Kind() == reflect.Struct {
			for i := range t.NumField() {
				if f := t.Field(i); sent(f) && holdsInterface(f.Type, map[reflect.Type]bool{}) {
					v.fields = append(v.fields, i)
				}
			}
		}
	}
	verdicts.Store(t, v)
	return v
}

// plain reports whether values of kind k hold no struct and no interface,
// so that their verdict is always fine.
func plain(k reflect.Kind) bool {
	return k <= reflect.Complex128 || k == reflect.Chan || k == reflect.Func || k == reflect.String || k == reflect.UnsafePointer
}

// opaque reports whether the encoding of t is t's own business.
func opaque(t reflect.Type) bool { return hasCustomEncoding(t) || t == bigIntType }

// findLost looks for an unexported field that values of t would lose.
// seen holds the types already looked at: each is looked at once, and a
// recursive type's fields are looked at where the recursion started.
func findLost(t reflect.Type, route string, seen map[reflect.Type]bool) *lostField {
	if plain(t.Kind()) || seen[t] || opaque(t) {
		return nil
	}
	seen[t] = true
	if v, ok := verdicts.Load(t); ok {
		if l := v.(*verdict).lost; l != nil {
			moved := *l // re-rooted at this position
			moved.route = route + l.route
			return &moved
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return findLost(t.Elem(), route, seen)
	case reflect.Slice, reflect.Array:
		return findLost(t.Elem(), route+"[]", seen)
	case reflect.Map:
		if l := findLost(t.Key(), route+"[key]", seen); l != nil {
			return l
		}
		return findLost(t.Elem(), route+"[]", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if skipped(f) {
				continue
			}
			if !sent(f) {
				if f.Type.Size() == 0 {
					continue // holds nothing: nothing is lost
				}
				return &lostField{field: t.String() + "." + f.Name, owner: t.String(), route: route + "." + f.Name}
			}
			if l := findLost(f.Type, route+"."+f.Name, seen); l != nil {
				return l
			}
		}
	}
	return nil
}

// holdsInterface reports whether values of t can hold an interface whose
// value the encoding would follow.
func holdsInterface(t reflect.Type, seen map[reflect.Type]bool) bool {
	if plain(t.Kind()) || seen[t] || opaque(t) {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsInterface(t.Elem(), seen)
	case reflect.Map:
		return holdsInterface(t.Key(), seen) || holdsInterface(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if f := t.Field(i); sent(f) && holdsInterface(f.Type, seen) {
				return true
			}
		}
	}
	return false
}

// sent reports whether the encoding writes f (or, for an embedded struct,
// the fields it promotes).
func sent(f reflect.StructField) bool {
	return !skipped(f) && (f.IsExported() || embeddedStruct(f))
}

// skipped reports whether the encoding leaves f out on purpose.
func skipped(f reflect.StructField) bool {
	if f.Name == "_" {
		return true // blank: cannot hold anything reachable
	}
	tag := f.Tag.Get("cbor")
	if tag == "" {
		tag = f.Tag.Get("json")
	}
	return tag == "-"
}

// embeddedStruct reports whether f embeds a struct (or pointer to one),
// whose exported fields the encoding promotes even if f is unexported.
func embeddedStruct(f reflect.StructField) bool {
	t := f.Type
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return f.Anonymous && t.Kind() == reflect.Struct
}

// maxWalk bounds how deep checkValue follows a value; anything deeper could
// not be decoded anyway (see maxNesting), and a cycle would never end.
const maxWalk = 4 * maxNesting

// walker looks at the values held by interfaces inside a value. It first
// walks without naming where it is, which allocates nothing; only when it
// finds a problem does it walk again, tracing the route for the message.
type walker struct {
	root  string
	trace bool
	last  reflect.Type // the type of the previous value, and its verdict:
	lastV *verdict     // the elements of a slice usually share one
}

// step extends route by s, when tracing.
func (w *walker) step(route string, s func() string) string {
	if !w.trace {
		return ""
	}
	return route + s()
}

func (w *walker) verdict(t reflect.Type) *verdict {
	if plain(t.Kind()) {
		return fine // without replacing the remembered type
	}
	if t != w.last {
		w.last, w.lastV = t, verdictOf(t)
	}
	return w.lastV
}

func (w *walker) check(v any) error {
	if err := w.walkAny(v, "", 0); err == nil || w.trace {
		return err
	}
	w.trace = true
	return w.walkAny(v, "", 0)
}

// held reports whether x may hold something to look at.
func held(x any) bool { return x != nil && !plain(reflect.TypeOf(x).Kind()) }

// walkAny looks at x, the value of an interface. The containers of
// JSON-like data are read without reflection.
func (w *walker) walkAny(x any, route string, depth int) error {
	if depth > maxWalk {
		return w.tooDeep(route)
	}
	switch x := x.(type) {
	case []any:
		for i, e := range x {
			if held(e) {
				if err := w.walkAny(e, w.step(route, func() string { return fmt.Sprintf("[%d](%T)", i, e) }), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	case map[string]any:
		for _, e := range x {
			if held(e) {
				if err := w.walkAny(e, w.step(route, func() string { return fmt.Sprintf("[](%T)", e) }), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	case map[any]any:
		for k, e := range x {
			if held(k) {
				if err := w.walkAny(k, w.step(route, func() string { return fmt.Sprintf("[key](%T)", k) }), depth+1); err != nil {
					return err
				}
			}
			if held(e) {
				if err := w.walkAny(e, w.step(route, func() string { return fmt.Sprintf("[](%T)", e) }), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if !held(x) {
		return nil
	}
	return w.walk(reflect.ValueOf(x), route, depth)
}

func (w *walker) tooDeep(route string) error {
	return fmt.Errorf("%w: %s%s is nested more than %d levels deep (a cycle?)", ErrUnserializable, w.root, route, maxWalk)
}

func (w *walker) walk(v reflect.Value, route string, depth int) error {
	if !v.IsValid() {
		return nil
	}
	if depth > maxWalk {
		return w.tooDeep(route)
	}
	t := v.Type()
	if (t == anySliceType || t == stringAnyMapType || t == anyAnyMapType) && v.CanInterface() {
		return w.walkAny(v.Interface(), route, depth)
	}
	vd := w.verdict(t)
	if vd.lost != nil {
		return vd.lost.err(w.root + route)
	}
	if !vd.dynamic {
		return nil
	}
	switch t.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		if v.CanInterface() {
			x := v.Interface()
			return w.walkAny(x, w.step(route, func() string { return fmt.Sprintf("(%T)", x) }), depth+1)
		}
		e := v.Elem()
		return w.walk(e, w.step(route, func() string { return "(" + e.Type().String() + ")" }), depth+1)
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return w.walk(v.Elem(), route, depth+1)
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if err := w.walk(v.Index(i), w.step(route, func() string { return fmt.Sprintf("[%d]", i) }), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if err := w.walk(it.Key(), w.step(route, func() string { return "[key]" }), depth+1); err != nil {
				return err
			}
			if err := w.walk(it.Value(), w.step(route, func() string { return "[]" }), depth+1); err != nil {
				return err
			}
		}
	case reflect.Struct:
		for _, i := range vd.fields {
			if err := w.walk(v.Field(i), w.step(route, func() string { return "." + t.Field(i).Name }), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
