package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// maxNesting bounds how deeply CBOR data may nest (like Python's default
// recursion limit); deeper data decodes with ErrCorrupt.
const maxNesting = 1024

// Modes are built once: building them validates options and is not cheap.
var (
	encMode = mustEncMode(cbor.EncOptions{
		Sort:    cbor.SortNone, // map order is irrelevant to us; sorting costs time
		Time:    cbor.TimeRFC3339Nano,
		TimeTag: cbor.EncTagRequired, // tag 0 so that decoding into any yields time.Time
	})
	decMode = mustDecMode(cbor.DecOptions{
		// The library defaults (32 levels, 128Ki elements) reject ordinary
		// task arguments. Elements are only bounded by the input size, but
		// nesting stays limited: the library decodes a chain of n nested
		// tags in O(n²) time, so the library maximum (65535) would let a
		// 64 KiB input take seconds.
		MaxNestedLevels:  maxNesting,
		MaxArrayElements: math.MaxInt32,
		MaxMapPairs:      math.MaxInt32,
		IntDec:           cbor.IntDecConvertSignedOrBigInt,
		BigIntDec:        cbor.BigIntDecodePointer,
		// Go strings may hold arbitrary bytes and Encode does not reject them.
		UTF8: cbor.UTF8DecodeInvalid,
	})
)

func mustEncMode(o cbor.EncOptions) cbor.UserBufferEncMode {
	m, err := o.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	return m
}

func mustDecMode(o cbor.DecOptions) cbor.DecMode {
	m, err := o.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}

// bufPool holds scratch buffers for library encoding; the result is copied
// out once, at its exact size, together with the header byte.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuf = 64 << 10

func encodeCBOR(v any) (Payload, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.WriteByte(tagCBOR)
	if err := encMode.MarshalToBuffer(v, buf); err != nil {
		var ute *cbor.UnsupportedTypeError
		if errors.As(err, &ute) {
			// The library names only the outermost struct; point at the field.
			if path, t := findUnsupported(ute.Type, map[reflect.Type]bool{}); path != "" {
				return Payload{}, fmt.Errorf("%w: %w (field %s is %v)", ErrUnserializable, err, path, t)
			}
		}
		return Payload{}, fmt.Errorf("%w: %w", ErrUnserializable, err)
	}
	return cborPayload(bytes.Clone(buf.Bytes())), nil
}

// findUnsupported looks inside t for a struct field whose type cannot be
// encoded, returning its dotted path and type. It mirrors the library's rules
// only loosely: it just improves error messages.
func findUnsupported(t reflect.Type, seen map[reflect.Type]bool) (string, reflect.Type) {
	if seen[t] || hasCustomEncoding(t) {
		return "", nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return findUnsupported(t.Elem(), seen)
	case reflect.Map:
		if p, bad := findUnsupported(t.Key(), seen); p != "" {
			return p, bad
		}
		return findUnsupported(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous || f.Tag.Get("cbor") == "-" {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
				return f.Name, f.Type
			}
			if p, bad := findUnsupported(f.Type, seen); p != "" {
				return f.Name + "." + p, bad
			}
		}
	}
	return "", nil
}

// cborPayload splits b, which starts with the 'C' tag, into a Payload.
func cborPayload(b []byte) Payload {
	return Payload{Header: b[:1:1], Body: b[1:]}
}

func decodeCBOR(body []byte, out any) error {
	// Fast paths: only exact, well-formed matches are handled here; anything
	// else (conversions, errors, odd encodings) goes to the library so the
	// results are always the library's.
	switch o := out.(type) {
	case *int:
		if o != nil {
			if v, ok := readInt(body, math.MaxInt); ok {
				*o = int(v)
				return nil
			}
		}
	case *int64:
		if o != nil {
			if v, ok := readInt(body, math.MaxInt64); ok {
				*o = v
				return nil
			}
		}
	case *float64:
		if o != nil && len(body) == 9 && body[0] == 0xfb {
			*o = math.Float64frombits(binary.BigEndian.Uint64(body[1:]))
			return nil
		}
	case *string:
		if o != nil {
			if s, ok := readString(body); ok {
				*o = string(s)
				return nil
			}
		}
	case *bool:
		if o != nil && len(body) == 1 && (body[0] == 0xf4 || body[0] == 0xf5) {
			*o = body[0] == 0xf5
			return nil
		}
	case *any:
		if o != nil {
			if v, ok := readScalar(body); ok {
				*o = v
				return nil
			}
			return decodeAny(body, o)
		}
	}
	if _, err := target(out); err != nil {
		return err
	}
	if err := decMode.Unmarshal(body, out); err != nil {
		return classify(err)
	}
	return nil
}

// cborScalar decodes body, exactly one well-formed CBOR item, into a T of
// the scalar kinds int, int64, float64 and bool, as decodeCBOR's fast
// paths do; it reports false for any other T or body.
func cborScalar[T any](body []byte) (T, bool) {
	var zero T
	switch any(zero).(type) {
	case int:
		if v, ok := readInt(body, math.MaxInt); ok {
			return any(int(v)).(T), true
		}
	case int64:
		if v, ok := readInt(body, math.MaxInt64); ok {
			return any(v).(T), true
		}
	case float64:
		if len(body) == 9 && body[0] == 0xfb {
			return any(math.Float64frombits(binary.BigEndian.Uint64(body[1:]))).(T), true
		}
	case bool:
		if len(body) == 1 && (body[0] == 0xf4 || body[0] == 0xf5) {
			return any(body[0] == 0xf5).(T), true
		}
	}
	return zero, false
}

// decodeAny replaces *out with the decoded value. It decodes into a fresh
// any: given a non-nil one, the library would decode into the pointer it
// holds, or fail.
func decodeAny(body []byte, out *any) error {
	var v any
	if err := decMode.Unmarshal(body, &v); err != nil {
		return classify(err)
	}
	*out = v
	return nil
}

// classify wraps a library decoding error in the matching sentinel.
func classify(err error) error {
	var (
		typeErr *cbor.UnmarshalTypeError
		keyErr  *cbor.InvalidMapKeyTypeError
		tagErr  *cbor.WrongTagError
	)
	if errors.As(err, &typeErr) || errors.As(err, &keyErr) || errors.As(err, &tagErr) {
		return fmt.Errorf("%w: %w", ErrTypeMismatch, err)
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// CBOR major types, shifted into the high bits of the initial byte.
const (
	majorUint   = 0 << 5
	majorNegInt = 1 << 5
	majorText   = 3 << 5
)

// headLen returns the size of the shortest CBOR head carrying argument n.
func headLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	case n <= math.MaxUint32:
		return 5
	default:
		return 9
	}
}

// putHead writes the shortest head for (major, n) to b, which must have room
// for headLen(n) bytes, as the library does.
func putHead(b []byte, major byte, n uint64) {
	switch {
	case n < 24:
		b[0] = major | byte(n)
	case n <= math.MaxUint8:
		b[0], b[1] = major|24, byte(n)
	case n <= math.MaxUint16:
		b[0] = major | 25
		binary.BigEndian.PutUint16(b[1:], uint16(n))
	case n <= math.MaxUint32:
		b[0] = major | 26
		binary.BigEndian.PutUint32(b[1:], uint32(n))
	default:
		b[0] = major | 27
		binary.BigEndian.PutUint64(b[1:], n)
	}
}

// readHead parses a definite-length head, returning its major type (high 3
// bits), argument and size.
func readHead(b []byte) (major byte, n uint64, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, 0, false
	}
	major, ai := b[0]&0xe0, b[0]&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), 1, true
	case ai == 24 && len(b) >= 2:
		return major, uint64(b[1]), 2, true
	case ai == 25 && len(b) >= 3:
		return major, uint64(binary.BigEndian.Uint16(b[1:])), 3, true
	case ai == 26 && len(b) >= 5:
		return major, uint64(binary.BigEndian.Uint32(b[1:])), 5, true
	case ai == 27 && len(b) >= 9:
		return major, binary.BigEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, 0, false
}

func headPayload(major byte, n uint64) Payload {
	b := make([]byte, 1+headLen(n))
	b[0] = tagCBOR
	putHead(b[1:], major, n)
	return cborPayload(b)
}

func encodeInt(i int64) Payload {
	if i < 0 {
		return headPayload(majorNegInt, uint64(^i)) // CBOR stores -1-i
	}
	return headPayload(majorUint, uint64(i))
}

func encodeUint(u uint64) Payload { return headPayload(majorUint, u) }

func encodeFloat64(f float64) Payload {
	// Mirror the library's defaults: NaN and ±Inf become float16, all other
	// values are written as float64.
	var b []byte
	switch {
	case math.IsNaN(f):
		b = []byte{tagCBOR, 0xf9, 0x7e, 0x00}
	case math.IsInf(f, 1):
		b = []byte{tagCBOR, 0xf9, 0x7c, 0x00}
	case math.IsInf(f, -1):
		b = []byte{tagCBOR, 0xf9, 0xfc, 0x00}
	default:
		b = make([]byte, 10)
		b[0], b[1] = tagCBOR, 0xfb
		binary.BigEndian.PutUint64(b[2:], math.Float64bits(f))
	}
	return cborPayload(b)
}

func encodeString(s string) Payload {
	h := headLen(uint64(len(s)))
	b := make([]byte, 1+h+len(s))
	b[0] = tagCBOR
	putHead(b[1:], majorText, uint64(len(s)))
	copy(b[1+h:], s)
	return cborPayload(b)
}

func encodeBool(v bool) Payload {
	if v {
		return cborPayload([]byte{tagCBOR, 0xf5})
	}
	return cborPayload([]byte{tagCBOR, 0xf4})
}

func encodeNil() Payload { return cborPayload([]byte{tagCBOR, 0xf6}) }

// readInt decodes body if it is exactly one CBOR integer in [-limit-1, limit].
func readInt(body []byte, limit uint64) (int64, bool) {
	major, n, size, ok := readHead(body)
	if !ok || size != len(body) || n > limit {
		return 0, false
	}
	switch major {
	case majorUint:
		return int64(n), true
	case majorNegInt:
		return ^int64(n), true
	}
	return 0, false
}

// readString returns the content of body if it is exactly one
// definite-length text string.
func readString(body []byte) ([]byte, bool) {
	major, n, size, ok := readHead(body)
	if !ok || major != majorText || n != uint64(len(body)-size) {
		return nil, false
	}
	return body[size:], true
}

// readScalar decodes body into the value the library would produce for an
// any target, for the scalar kinds Encode writes by hand.
func readScalar(body []byte) (any, bool) {
	if len(body) == 1 {
		switch body[0] {
		case 0xf4:
			return false, true
		case 0xf5:
			return true, true
		case 0xf6:
			return nil, true
		}
	}
	if len(body) == 9 && body[0] == 0xfb {
		return math.Float64frombits(binary.BigEndian.Uint64(body[1:])), true
	}
	if v, ok := readInt(body, math.MaxInt64); ok {
		return v, true
	}
	if s, ok := readString(body); ok {
		return string(s), true
	}
	return nil, false
}
