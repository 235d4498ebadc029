package codec

import (
	"errors"
	"math"
	"testing"
)

// sameAsDecode checks that DecodeValue[T] of data gives what Decode into a
// *T gives: the same value, or an error of the same kind.
func sameAsDecode[T any](t *testing.T, data []byte) {
	t.Helper()
	var want T
	wantErr := Decode(data, &want)
	got, err := DecodeValue[T](data)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Errorf("DecodeValue[%T](%x): error %v, Decode's %v", want, data, err, wantErr)
	case err != nil:
		for _, kind := range []error{ErrCorrupt, ErrTypeMismatch} {
			if errors.Is(err, kind) != errors.Is(wantErr, kind) {
				t.Errorf("DecodeValue[%T](%x): error %v, Decode's %v", want, data, err, wantErr)
			}
		}
	case !equal(got, want):
		t.Errorf("DecodeValue[%T](%x) = %#v, Decode gives %#v", want, data, got, want)
	}
}

// DecodeValue decodes as Decode does, through its scalar fast paths and
// past them: every encoded value into each type, so that mismatches,
// conversions and odd encodings are covered too.
func TestDecodeValueMatchesDecode(t *testing.T) {
	body := func(b ...byte) []byte { return append([]byte{tagCBOR}, b...) }
	inputs := [][]byte{
		{}, {tagCBOR}, {0x7e, 1},
		body(0x05), body(0x1b, 0, 0, 0, 0, 0, 0, 0, 9), body(0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0),
		body(0xf9, 0x3e, 0x00), body(0xfb), body(0xf5, 0x00), body(0x18),
	}
	for _, v := range []any{
		0, 1, 24, -25, math.MaxInt, math.MinInt, int64(math.MinInt64), uint64(math.MaxUint64),
		1.5, math.Inf(-1), math.Copysign(0, -1), true, false, "", "word", nil,
		[]float64{1, 2}, []int32{7}, map[string]int{"a": 1}, struct{ A int }{3},
	} {
		p, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, p.Bytes())
	}
	for _, data := range inputs {
		sameAsDecode[int](t, data)
		sameAsDecode[int64](t, data)
		sameAsDecode[float64](t, data)
		sameAsDecode[bool](t, data)
		sameAsDecode[string](t, data)
		sameAsDecode[any](t, data)
		sameAsDecode[[]float64](t, data)
		sameAsDecode[map[string]int](t, data)
		sameAsDecode[struct{ A int }](t, data)
	}
}

// A scalar Get decodes without a heap allocation (Get[int] of a small
// value allocated 8 bytes a call through Decode's pointer target).
func TestDecodeValueOfScalarsAllocatesNothing(t *testing.T) {
	for _, c := range []struct {
		name   string
		data   []byte
		decode func([]byte) error
	}{
		{"int", mustBytes(t, 123456789), func(b []byte) error { _, err := DecodeValue[int](b); return err }},
		{"int64", mustBytes(t, int64(-5)), func(b []byte) error { _, err := DecodeValue[int64](b); return err }},
		{"float64", mustBytes(t, 2.5), func(b []byte) error { _, err := DecodeValue[float64](b); return err }},
		{"bool", mustBytes(t, true), func(b []byte) error { _, err := DecodeValue[bool](b); return err }},
	} {
		if err := c.decode(c.data); err != nil {
			t.Fatalf("DecodeValue[%s]: %v", c.name, err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = c.decode(c.data) }); n != 0 {
			t.Errorf("DecodeValue[%s]: %v allocations a call, want 0", c.name, n)
		}
	}
}

func mustBytes(t *testing.T, v any) []byte {
	t.Helper()
	p, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
}
