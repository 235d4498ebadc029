package codec

import (
	"errors"
	"fmt"
	"reflect"
)

// ErrUnserializable is wrapped by Encode errors: the value (or something
// nested in it) has a type that cannot be serialized, such as a channel or a
// function, or a struct with an unexported field that would be lost, or a
// Marshaler failed.
var ErrUnserializable = errors.New("codec: value cannot be serialized")

// ErrTypeMismatch is wrapped by Decode errors when the data is well formed but
// cannot be stored in the target, e.g. a string into *int or raw []int64 data
// into *[]float64.
var ErrTypeMismatch = errors.New("codec: encoded value does not match the target type")

// ErrCorrupt is wrapped by Decode errors when the data is empty, truncated,
// has an unknown format tag or is otherwise malformed.
var ErrCorrupt = errors.New("codec: malformed data")

// Format tags: the first byte of every encoded value.
const (
	tagRaw  = 'R'
	tagCBOR = 'C'
)

// Payload is an encoded value in up to two parts, so that a raw slice is never
// copied on encode.
//
// For the raw layout Body aliases the memory of the encoded slice; for the
// CBOR layout Header and Body are freshly allocated. Neither part may be
// modified.
type Payload struct {
	Header []byte // small prefix; its first byte is the format tag
	Body   []byte // for raw layouts this ALIASES the source slice's memory; otherwise CBOR bytes
}

// Len returns the encoded size, len(Header)+len(Body).
func (p Payload) Len() int { return len(p.Header) + len(p.Body) }

// CopyTo writes Header followed by Body to the start of dst and returns the
// number of bytes written, which is always p.Len(). dst must hold at least
// p.Len() bytes; CopyTo panics otherwise rather than write a truncated value.
func (p Payload) CopyTo(dst []byte) int {
	if len(dst) < p.Len() {
		panic(fmt.Sprintf("codec: Payload.CopyTo: destination has %d bytes, need %d", len(dst), p.Len()))
	}
	n := copy(dst, p.Header)
	copy(dst[n:], p.Body)
	return p.Len()
}

// Bytes returns the encoded value as one contiguous, newly allocated slice
// that shares no memory with p and is safe to keep.
func (p Payload) Bytes() []byte {
	b := make([]byte, p.Len())
	p.CopyTo(b)
	return b
}

// Encode serializes v. Numeric slices use the zero-copy raw layout, whose
// Body aliases v's memory; everything else is encoded as CBOR. A value that
// could not be sent whole, because it holds a struct with an unexported
// field (see CheckType), is refused. Errors wrap ErrUnserializable.
func Encode(v any) (Payload, error) {
	switch x := v.(type) {
	case nil:
		return encodeNil(), nil
	case int:
		return encodeInt(int64(x)), nil
	case int64:
		return encodeInt(x), nil
	case uint64:
		return encodeUint(x), nil
	case float64:
		return encodeFloat64(x), nil
	case string:
		return encodeString(x), nil
	case bool:
		return encodeBool(x), nil
	case []byte:
		return encodeRaw(x, codeUint8), nil
	case []float64:
		return encodeRaw(x, codeFloat64), nil
	case []int64:
		return encodeRaw(x, codeInt64), nil
	case []int:
		return encodeRaw(x, codeInt), nil
	case []float32:
		return encodeRaw(x, codeFloat32), nil
	case []int32:
		return encodeRaw(x, codeInt32), nil
	}
	if p, ok := encodeRawReflect(v); ok {
		return p, nil
	}
	if err := checkValue(v); err != nil {
		return Payload{}, err
	}
	return encodeCBOR(v)
}

// Decode deserializes data, as produced by Payload.Bytes or Payload.CopyTo,
// into out, which must be a non-nil pointer. The result never shares
// memory with data: raw slices are copied, as CBOR byte strings are.
// Decoding into *any replaces whatever the any held. Errors wrap ErrCorrupt
// or ErrTypeMismatch, except for an invalid out, which is a programming
// error.
func Decode(data []byte, out any) error { return decode(data, out, false) }

// DecodeView is Decode, except that raw data decoded into a slice of its
// element type aliases data when data is suitably aligned: the result is
// valid only while data is, and changes if data does.
func DecodeView(data []byte, out any) error { return decode(data, out, true) }

func decode(data []byte, out any, alias bool) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	switch data[0] {
	case tagCBOR:
		return decodeCBOR(data[1:], out)
	case tagRaw:
		return decodeRaw(data, out, alias)
	default:
		return fmt.Errorf("%w: unknown format tag 0x%02x", ErrCorrupt, data[0])
	}
}

// target checks that out is a non-nil pointer and returns the value it
// points to.
func target(out any) (reflect.Value, error) {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return reflect.Value{}, fmt.Errorf("codec: Decode target must be a non-nil pointer, got %T", out)
	}
	return rv.Elem(), nil
}

// DecodeValue is Decode into a new value of type T, which it returns. The
// scalars Encode writes by hand (int, int64, float64, bool) are decoded
// without moving the value to the heap, which Decode's pointer target
// does: a Get of a small value allocates nothing for it.
func DecodeValue[T any](data []byte) (T, error) {
	if len(data) > 1 && data[0] == tagCBOR {
		if v, ok := cborScalar[T](data[1:]); ok {
			return v, nil
		}
	}
	out := new(T)
	err := decode(data, out, false)
	return *out, err
}
