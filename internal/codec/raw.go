package codec

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

const rawHeaderLen = 8

// Element-kind codes of the raw layout. They are part of the wire format:
// never renumber them.
const (
	codeUint8 byte = iota + 1
	codeInt8
	codeUint16
	codeInt16
	codeUint32
	codeInt32
	codeUint64
	codeInt64
	codeInt
	codeUint
	codeFloat32
	codeFloat64
)

// rawKind describes one element kind of the raw layout.
type rawKind struct {
	code  byte
	kind  reflect.Kind
	typ   reflect.Type // canonical slice type, produced when decoding into *any
	size  uintptr      // local element size
	align uintptr
}

func newRawKind[E any](code byte) rawKind {
	var zero E
	return rawKind{
		code:  code,
		kind:  reflect.TypeFor[E]().Kind(),
		typ:   reflect.TypeFor[[]E](),
		size:  unsafe.Sizeof(zero),
		align: unsafe.Alignof(zero),
	}
}

// rawKinds is indexed by code.
var rawKinds = [...]rawKind{
	codeUint8:   newRawKind[uint8](codeUint8),
	codeInt8:    newRawKind[int8](codeInt8),
	codeUint16:  newRawKind[uint16](codeUint16),
	codeInt16:   newRawKind[int16](codeInt16),
	codeUint32:  newRawKind[uint32](codeUint32),
	codeInt32:   newRawKind[int32](codeInt32),
	codeUint64:  newRawKind[uint64](codeUint64),
	codeInt64:   newRawKind[int64](codeInt64),
	codeInt:     newRawKind[int](codeInt),
	codeUint:    newRawKind[uint](codeUint),
	codeFloat32: newRawKind[float32](codeFloat32),
	codeFloat64: newRawKind[float64](codeFloat64),
}

// codeOfKind maps a reflect.Kind to its raw code, 0 if it has none.
var codeOfKind = func() (m [reflect.UnsafePointer + 1]byte) {
	for _, k := range rawKinds[1:] {
		m[k.kind] = k.code
	}
	return m
}()

func rawKindOf(t reflect.Type) *rawKind {
	if k := t.Kind(); int(k) < len(codeOfKind) && codeOfKind[k] != 0 {
		return &rawKinds[codeOfKind[k]]
	}
	return nil
}

var (
	cborMarshalerType   = reflect.TypeFor[cbor.Marshaler]()
	binaryMarshalerType = reflect.TypeFor[encoding.BinaryMarshaler]()
)

// hasCustomEncoding reports whether the CBOR library would encode a value of
// type t through one of its methods rather than structurally.
func hasCustomEncoding(t reflect.Type) bool {
	for _, t := range [...]reflect.Type{t, reflect.PointerTo(t)} {
		if t.Implements(cborMarshalerType) || t.Implements(binaryMarshalerType) {
			return true
		}
	}
	return false
}

func rawHeader(code byte, size uintptr) []byte {
	h := make([]byte, rawHeaderLen)
	h[0] = tagRaw
	h[1] = code
	binary.LittleEndian.PutUint32(h[4:], uint32(size))
	return h
}

// encodeRaw returns a Payload whose Body aliases s.
func encodeRaw[E any](s []E, code byte) Payload {
	var zero E
	size := unsafe.Sizeof(zero)
	body := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), uintptr(len(s))*size)
	return Payload{Header: rawHeader(code, size), Body: body}
}

// encodeRawReflect handles numeric slices of types not covered by Encode's
// type switch, such as named slice or element types.
func encodeRawReflect(v any) (Payload, bool) {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Slice {
		return Payload{}, false
	}
	k := rawKindOf(t.Elem())
	if k == nil || hasCustomEncoding(t) || hasCustomEncoding(t.Elem()) {
		return Payload{}, false
	}
	rv := reflect.ValueOf(v)
	body := unsafe.Slice((*byte)(rv.UnsafePointer()), uintptr(rv.Len())*k.size)
	return Payload{Header: rawHeader(k.code, k.size), Body: body}, true
}

// parseRaw validates a raw-layout value and returns its element kind and body.
func parseRaw(data []byte) (*rawKind, []byte, error) {
	if len(data) < rawHeaderLen {
		return nil, nil, fmt.Errorf("%w: raw header truncated (%d bytes)", ErrCorrupt, len(data))
	}
	code, size := data[1], binary.LittleEndian.Uint32(data[4:])
	if data[2] != 0 || data[3] != 0 {
		return nil, nil, fmt.Errorf("%w: raw header reserved bytes are not zero", ErrCorrupt)
	}
	if code == 0 || int(code) >= len(rawKinds) {
		return nil, nil, fmt.Errorf("%w: unknown raw element kind %d", ErrCorrupt, code)
	}
	k := &rawKinds[code]
	if uintptr(size) != k.size {
		if (code == codeInt || code == codeUint) && (size == 4 || size == 8) {
			// Valid data from a host with a different int width.
			return nil, nil, fmt.Errorf("%w: raw data has %d-byte %v elements, this host's are %d bytes",
				ErrTypeMismatch, size, k.kind, k.size)
		}
		return nil, nil, fmt.Errorf("%w: raw %v elements declared %d bytes wide", ErrCorrupt, k.typ, size)
	}
	body := data[rawHeaderLen:]
	if uintptr(len(body))%k.size != 0 {
		return nil, nil, fmt.Errorf("%w: raw body of %d bytes is not a whole number of %d-byte elements",
			ErrCorrupt, len(body), k.size)
	}
	return k, body, nil
}

func rawMismatch(k *rawKind, target reflect.Type) error {
	return fmt.Errorf("%w: raw %v data cannot be decoded into %v", ErrTypeMismatch, k.typ, target)
}

func decodeRaw(data []byte, out any, alias bool) error {
	k, body, err := parseRaw(data)
	if err != nil {
		return err
	}
	switch o := out.(type) {
	case *[]byte:
		if o != nil {
			return decodeRawSlice(k, body, o, codeUint8, alias)
		}
	case *[]float64:
		if o != nil {
			return decodeRawSlice(k, body, o, codeFloat64, alias)
		}
	case *[]int64:
		if o != nil {
			return decodeRawSlice(k, body, o, codeInt64, alias)
		}
	case *[]int:
		if o != nil {
			return decodeRawSlice(k, body, o, codeInt, alias)
		}
	case *[]float32:
		if o != nil {
			return decodeRawSlice(k, body, o, codeFloat32, alias)
		}
	case *[]int32:
		if o != nil {
			return decodeRawSlice(k, body, o, codeInt32, alias)
		}
	}
	return decodeRawReflect(k, body, out, alias)
}

// decodeRawSlice is the reflection-free path for common slice types. The
// result aliases body only if alias is set and body is aligned for E.
func decodeRawSlice[E any](k *rawKind, body []byte, out *[]E, code byte, alias bool) error {
	if k.code != code {
		return rawMismatch(k, reflect.TypeFor[[]E]())
	}
	n := uintptr(len(body)) / k.size
	p := unsafe.Pointer(unsafe.SliceData(body))
	switch {
	case n == 0:
		*out = []E{}
	case alias && uintptr(p)%k.align == 0:
		*out = unsafe.Slice((*E)(p), n)
	default:
		s := make([]E, n)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(body)), body)
		*out = s
	}
	return nil
}

func decodeRawReflect(k *rawKind, body []byte, out any, alias bool) error {
	dst, err := target(out)
	if err != nil {
		return err
	}
	t := dst.Type()
	n := len(body) / int(k.size)
	switch {
	case t.Kind() == reflect.Interface && t.NumMethod() == 0:
		dst.Set(copyRaw(k.typ, body, n))
	case t.Kind() == reflect.Slice && rawKindOf(t.Elem()) == k:
		p := unsafe.Pointer(unsafe.SliceData(body))
		if alias && n > 0 && uintptr(p)%k.align == 0 {
			dst.Set(reflect.SliceAt(t.Elem(), p, n))
		} else {
			dst.Set(copyRaw(t, body, n))
		}
	default:
		return rawMismatch(k, t)
	}
	return nil
}

// copyRaw returns a new slice of type t holding the n elements in body.
func copyRaw(t reflect.Type, body []byte, n int) reflect.Value {
	s := reflect.MakeSlice(t, n, n)
	if n > 0 {
		copy(unsafe.Slice((*byte)(s.UnsafePointer()), len(body)), body)
	}
	return s
}
