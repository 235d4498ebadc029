package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
)

type Vec []float64

type Celsius float32

type inner struct {
	A int
	B []string
}

type sample struct {
	Name   string
	Count  int
	Ratio  float64
	Tags   []string
	Inner  *inner
	Scores map[string]int
	hidden int `cbor:"-"` // unexported, deliberately left out
}

// ref mimics the project's Ref: it encodes itself as a tagged array.
type ref struct {
	ID    uint64
	Owner string
}

const refTag = 40000

func (r ref) MarshalCBOR() ([]byte, error) {
	return cbor.Marshal(cbor.Tag{Number: refTag, Content: []any{r.ID, r.Owner}})
}

func (r *ref) UnmarshalCBOR(b []byte) error {
	var t cbor.RawTag
	if err := cbor.Unmarshal(b, &t); err != nil {
		return err
	}
	if t.Number != refTag {
		return fmt.Errorf("ref: unexpected tag %d", t.Number)
	}
	var parts struct {
		_     struct{} `cbor:",toarray"`
		ID    uint64
		Owner string
	}
	if err := cbor.Unmarshal(t.Content, &parts); err != nil {
		return err
	}
	r.ID, r.Owner = parts.ID, parts.Owner
	return nil
}

type holder struct {
	Name string
	R    ref
	P    *ref
	Rs   []ref
}

// cents is numeric but has its own encoding, so []cents must not go raw.
type cents int64

func (c cents) MarshalCBOR() ([]byte, error) { return cbor.Marshal(fmt.Sprintf("%d¢", int64(c))) }

func (c *cents) UnmarshalCBOR(b []byte) error {
	var s string
	if err := cbor.Unmarshal(b, &s); err != nil {
		return err
	}
	_, err := fmt.Sscanf(s, "%d¢", (*int64)(c))
	return err
}

// roundTrip encodes v, flattens it and decodes it into a new value of v's type.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	p, err := Encode(v)
	if err != nil {
		t.Fatalf("Encode(%#v): %v", v, err)
	}
	out := reflect.New(reflect.TypeOf(v))
	if err := Decode(p.Bytes(), out.Interface()); err != nil {
		t.Fatalf("Decode(%T): %v", v, err)
	}
	return out.Elem().Interface()
}

// equal is reflect.DeepEqual except that NaN equals NaN.
func equal(a, b any) bool {
	if fa, ok := a.(float64); ok {
		if fb, ok := b.(float64); ok && math.IsNaN(fa) && math.IsNaN(fb) {
			return true
		}
	}
	return reflect.DeepEqual(a, b)
}

// roundTripCase is one value for TestRoundTrip and the format tag it must get.
type roundTripCase struct {
	name string
	v    any
	want any // defaults to v
	tag  byte
}

// roundTripCases lists the values TestRoundTrip encodes and decodes.
func roundTripCases() []roundTripCase {
	seven := 7
	return []roundTripCase{
		{"int", 42, nil, tagCBOR},
		{"int zero", 0, nil, tagCBOR},
		{"int negative", -123456, nil, tagCBOR},
		{"int max", math.MaxInt, nil, tagCBOR},
		{"int min", math.MinInt, nil, tagCBOR},
		{"int64", int64(-1 << 40), nil, tagCBOR},
		{"int64 min", int64(math.MinInt64), nil, tagCBOR},
		{"uint64 big", uint64(math.MaxUint64), nil, tagCBOR},
		{"uint8", uint8(200), nil, tagCBOR},
		{"int16", int16(-300), nil, tagCBOR},
		{"float64", 3.14159, nil, tagCBOR},
		{"float64 negative zero", math.Copysign(0, -1), nil, tagCBOR},
		{"float64 NaN", math.NaN(), nil, tagCBOR},
		{"float64 +Inf", math.Inf(1), nil, tagCBOR},
		{"float64 -Inf", math.Inf(-1), nil, tagCBOR},
		{"float64 smallest", math.SmallestNonzeroFloat64, nil, tagCBOR},
		{"float32", float32(1.25), nil, tagCBOR},
		{"string", "hello", nil, tagCBOR},
		{"string empty", "", nil, tagCBOR},
		{"string unicode", "héllo, 世界 🌍", nil, tagCBOR},
		{"string long", strings.Repeat("x", 70000), nil, tagCBOR},
		{"string invalid utf8", "a\xffb\xc0", nil, tagCBOR},
		{"bool true", true, nil, tagCBOR},
		{"bool false", false, nil, tagCBOR},
		{"struct", sample{
			Name: "s", Count: 3, Ratio: 0.5, Tags: []string{"a", "b"},
			Inner: &inner{A: 1, B: []string{"x"}}, Scores: map[string]int{"k": 9}, hidden: 5,
		}, sample{
			Name: "s", Count: 3, Ratio: 0.5, Tags: []string{"a", "b"},
			Inner: &inner{A: 1, B: []string{"x"}}, Scores: map[string]int{"k": 9},
		}, tagCBOR},
		{"pointer", &seven, nil, tagCBOR},
		{"nested slices", [][]string{{"a"}, {}, {"b", "c"}}, nil, tagCBOR},
		{"nested maps", map[string]map[int][]bool{"x": {1: {true, false}}}, nil, tagCBOR},
		{"map int keys", map[int]string{1: "one", -2: "minus two"}, nil, tagCBOR},
		{"[][]float64", [][]float64{{1, 2}, {3}}, nil, tagCBOR},
		{"array", [3]int{1, 2, 3}, nil, tagCBOR},
		{"[]any", []any{int64(1), "two", 3.0, nil, true}, nil, tagCBOR},
		{"[]byte", []byte("raw bytes"), nil, tagRaw},
		{"[]float64", []float64{1, -2.5, math.MaxFloat64}, nil, tagRaw},
		{"Vec", Vec{1, 2, 3}, nil, tagRaw},
		{"[]Celsius", []Celsius{-40, 100}, nil, tagRaw},
		{"[]int64", []int64{math.MinInt64, 0, math.MaxInt64}, nil, tagRaw},
		{"[]int", []int{1, 2, 3}, nil, tagRaw},
		{"[]int32", []int32{-1, 2}, nil, tagRaw},
		{"[]float32", []float32{0.5, 1}, nil, tagRaw},
		{"[]int8", []int8{-128, 127}, nil, tagRaw},
		{"[]uint16", []uint16{0, 65535}, nil, tagRaw},
		{"[]int16", []int16{-1}, nil, tagRaw},
		{"[]uint32", []uint32{1 << 31}, nil, tagRaw},
		{"[]uint64", []uint64{math.MaxUint64}, nil, tagRaw},
		{"[]uint", []uint{7}, nil, tagRaw},
		{"[]float64 empty", []float64{}, nil, tagRaw},
		{"[]float64 nil", []float64(nil), []float64{}, tagRaw},
		{"[]cents", []cents{1, 250}, nil, tagCBOR},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tt := range roundTripCases() {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Encode(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if p.Header[0] != tt.tag {
				t.Fatalf("format tag %q, want %q", p.Header[0], tt.tag)
			}
			want := tt.want
			if want == nil {
				want = tt.v
			}
			if got := roundTrip(t, tt.v); !equal(got, want) {
				t.Fatalf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestRoundTripTime(t *testing.T) {
	// The instant and UTC offset survive; the zone name does not.
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("X", 3600))
	got := roundTrip(t, when).(time.Time)
	_, off := got.Zone()
	if !got.Equal(when) || off != 3600 {
		t.Fatalf("got %v, want %v", got, when)
	}
}

func TestNil(t *testing.T) {
	for _, v := range []any{nil, (*int)(nil), map[string]int(nil)} {
		p, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		out := any("sentinel")
		if err := Decode(p.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		if out != nil {
			t.Fatalf("Decode(%#v) into *any = %#v, want nil", v, out)
		}
	}
}

// TestDecodeIntoAny pins down the Go types produced for an any target.
func TestDecodeIntoAny(t *testing.T) {
	when := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		v, want any
	}{
		{42, int64(42)},
		{-42, int64(-42)},
		{uint8(7), int64(7)},
		{uint64(math.MaxInt64), int64(math.MaxInt64)},
		{uint64(math.MaxUint64), new(big.Int).SetUint64(math.MaxUint64)},
		{float32(1.5), 1.5},
		{2.5, 2.5},
		{"s", "s"},
		{true, true},
		{[]string{"a"}, []any{"a"}},
		{map[string]int{"a": 1}, map[any]any{"a": int64(1)}},
		{inner{A: 1}, map[any]any{"A": int64(1), "B": nil}},
		{[2]bool{true, false}, []any{true, false}},
		{[]byte("abc"), []byte("abc")},
		{[]float64{1, 2}, []float64{1, 2}},
		{Vec{3}, []float64{3}},
		{[]Celsius{1}, []float32{1}},
		{[]int{1}, []int{1}},
		{[]uint16{}, []uint16{}},
		{when, when},
	}
	for _, tt := range tests {
		p, err := Encode(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		var got any
		if err := Decode(p.Bytes(), &got); err != nil {
			t.Fatalf("Decode(%#v): %v", tt.v, err)
		}
		if gt, ok := got.(time.Time); ok && gt.Equal(when) {
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%#v) = %#v (%T), want %#v (%T)", tt.v, got, got, tt.want, tt.want)
		}
	}
}

func TestDecodeIntoAnyReplaces(t *testing.T) {
	x := 1
	for _, v := range []any{int64(3), &x, "old", []any{1}} {
		for _, in := range []any{5, []string{"new"}, map[string]int{"k": 1}, []float64{2}} {
			p, _ := Encode(in)
			got := v
			if err := Decode(p.Bytes(), &got); err != nil {
				t.Fatalf("Decode(%#v) into any holding %#v: %v", in, v, err)
			}
			var fresh any
			if err := Decode(p.Bytes(), &fresh); err != nil || !reflect.DeepEqual(got, fresh) {
				t.Fatalf("Decode(%#v) into any holding %#v: got %#v, want %#v", in, v, got, fresh)
			}
		}
	}
	if x != 1 {
		t.Fatal("Decode wrote through the pointer held by the any")
	}
}

// TestFastPathsMatchLibrary checks that the hand-written scalar encodings are
// byte-for-byte what the library produces, and that both decode alike.
func TestFastPathsMatchLibrary(t *testing.T) {
	values := []any{
		0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1,
		-1, -24, -25, -256, -257, -65537, math.MaxInt, math.MinInt,
		int64(0), int64(-1 << 33), int64(math.MaxInt64), int64(math.MinInt64),
		uint64(0), uint64(24), uint64(math.MaxUint64),
		0.0, math.Copysign(0, -1), 1.5, -1e300, math.NaN(), math.Inf(1), math.Inf(-1),
		"", "a", strings.Repeat("b", 23), strings.Repeat("c", 24), strings.Repeat("d", 256),
		strings.Repeat("e", 65536), "ü\x00\xff",
		true, false, nil,
	}
	for _, v := range values {
		p, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		lib, err := encMode.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Header, []byte{tagCBOR}) || !bytes.Equal(p.Body, lib) {
			t.Errorf("Encode(%v) = %x %x, library gives %x", v, p.Header, p.Body, lib)
		}

		var target reflect.Type = reflect.TypeFor[any]()
		if v != nil {
			target = reflect.TypeOf(v)
		}
		for _, typ := range []reflect.Type{target, reflect.TypeFor[any]()} {
			ours, theirs := reflect.New(typ), reflect.New(typ)
			if err := Decode(p.Bytes(), ours.Interface()); err != nil {
				t.Fatalf("Decode(%v): %v", v, err)
			}
			if err := decMode.Unmarshal(lib, theirs.Interface()); err != nil {
				t.Fatalf("library Unmarshal(%v): %v", v, err)
			}
			if o, l := ours.Elem().Interface(), theirs.Elem().Interface(); !equal(o, l) || !equal(o, v) && typ == target {
				t.Errorf("decode %v into %v: got %#v, library %#v", v, typ, o, l)
			}
		}
	}
}

// TestFastDecodeDefersToLibrary feeds the fast decoders inputs they must not
// handle themselves: conversions and non-shortest forms are the library's.
func TestFastDecodeDefersToLibrary(t *testing.T) {
	body := func(b ...byte) []byte { return append([]byte{tagCBOR}, b...) }

	var f float64
	if err := Decode(body(0x05), &f); err != nil || f != 5 {
		t.Errorf("int into float64: %v, %v", f, err)
	}
	if err := Decode(body(0xf9, 0x3e, 0x00), &f); err != nil || f != 1.5 {
		t.Errorf("float16 into float64: %v, %v", f, err)
	}
	var i int
	if err := Decode(body(0x1b, 0, 0, 0, 0, 0, 0, 0, 9), &i); err != nil || i != 9 {
		t.Errorf("non-shortest int: %v, %v", i, err)
	}
	if err := Decode(body(0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0), &i); !errors.Is(err, ErrTypeMismatch) {
		t.Errorf("overflowing int: %v", err)
	}
	var s string
	if err := Decode(body(0x7f, 0x61, 'a', 0x61, 'b', 0xff), &s); err != nil || s != "ab" {
		t.Errorf("indefinite string: %q, %v", s, err)
	}
}

func TestMarshaler(t *testing.T) {
	h := holder{
		Name: "h",
		R:    ref{ID: 1, Owner: "node-a"},
		P:    &ref{ID: 2, Owner: "node-b"},
		Rs:   []ref{{ID: 3}, {ID: 4, Owner: "c"}},
	}
	p, err := Encode(h)
	if err != nil {
		t.Fatal(err)
	}
	tagHead := []byte{0xd9, refTag >> 8, refTag & 0xff}
	if n := bytes.Count(p.Body, tagHead); n != 4 {
		t.Fatalf("MarshalCBOR used %d times, want 4", n)
	}
	if got := roundTrip(t, h); !reflect.DeepEqual(got, h) {
		t.Fatalf("got %#v, want %#v", got, h)
	}
	rs := []ref{{ID: 5, Owner: "x"}}
	if got := roundTrip(t, rs); !reflect.DeepEqual(got, rs) {
		t.Fatalf("got %#v, want %#v", got, rs)
	}

	// A failing Unmarshaler surfaces as corrupt data, keeping its cause.
	bad := append([]byte{tagCBOR}, mustMarshal(t, cbor.Tag{Number: 1234, Content: 0})...)
	var r ref
	if err := Decode(bad, &r); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "unexpected tag") {
		t.Fatalf("got %v", err)
	}
}

func TestTypeMismatch(t *testing.T) {
	tests := []struct {
		name  string
		v     any
		out   any
		names []string
	}{
		{"string into int", "x", new(int), nil},
		{"int into string", 5, new(string), nil},
		{"struct into int", inner{A: 1}, new(int), nil},
		{"negative into uint", -1, new(uint), nil},
		{"map into slice", map[string]int{"a": 1}, new([]int), nil},
		{"raw kind", []int64{1}, new([]float64), []string{"[]int64", "[]float64"}},
		{"raw kind reflect", []float32{1}, new(Vec), []string{"[]float32", "Vec"}},
		{"raw into int array", []int{1}, new([]int64), []string{"[]int", "[]int64"}},
		{"raw into string", []byte("x"), new(string), []string{"[]uint8", "string"}},
		{"raw into array", []float64{1, 2, 3}, new([3]float64), []string{"[]float64", "[3]float64"}},
		{"raw into interface", []byte("x"), new(fmt.Stringer), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Encode(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			err = Decode(p.Bytes(), tt.out)
			if !errors.Is(err, ErrTypeMismatch) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrTypeMismatch", err)
			}
			for _, n := range tt.names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("error %q does not name %s", err, n)
				}
			}
		})
	}
}

func TestRawIntWidth(t *testing.T) {
	// Data from a host whose int is 4 bytes wide.
	data := []byte{tagRaw, codeInt, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0}
	if unsafe.Sizeof(int(0)) == 4 {
		data[4] = 8
		data = append(data, 0, 0, 0, 0)
	}
	var out []int
	if err := Decode(data, &out); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("got %v", err)
	}
}

func TestCorrupt(t *testing.T) {
	raw := func(b ...byte) []byte { return append([]byte{tagRaw}, b...) }
	tests := []struct {
		name string
		data []byte
		out  any
	}{
		{"nil", nil, new(any)},
		{"empty", []byte{}, new(int)},
		{"unknown tag", []byte{'X', 1}, new(any)},
		{"cbor empty body", []byte{tagCBOR}, new(any)},
		{"cbor empty body int", []byte{tagCBOR}, new(int)},
		{"cbor truncated int", []byte{tagCBOR, 0x19, 1}, new(int)},
		{"cbor truncated string", []byte{tagCBOR, 0x65, 'a'}, new(string)},
		{"cbor trailing bytes", []byte{tagCBOR, 0x01, 0x02}, new(int)},
		{"cbor trailing bytes any", []byte{tagCBOR, 0xf5, 0xf5}, new(any)},
		{"cbor reserved ai", []byte{tagCBOR, 0x1c}, new(any)},
		{"cbor huge array", []byte{tagCBOR, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, new([]int)},
		{"raw short header", raw(codeFloat64, 0, 0, 8), new([]float64)},
		{"raw reserved", raw(codeFloat64, 1, 0, 8, 0, 0, 0), new([]float64)},
		{"raw kind zero", raw(0, 0, 0, 8, 0, 0, 0), new(any)},
		{"raw kind unknown", raw(99, 0, 0, 8, 0, 0, 0), new(any)},
		{"raw size wrong", raw(codeFloat64, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4), new([]float64)},
		{"raw size wrong reflect", raw(codeFloat64, 0, 0, 4, 0, 0, 0), new(Vec)},
		{"raw body partial", raw(codeFloat64, 0, 0, 8, 0, 0, 0, 1, 2, 3), new([]float64)},
		{"raw body partial any", raw(codeUint16, 0, 0, 2, 0, 0, 0, 1), new(any)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Decode(tt.data, tt.out); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestInvalidTarget(t *testing.T) {
	cborData, _ := Encode(1)
	rawData, _ := Encode([]byte("x"))
	for _, data := range [][]byte{cborData.Bytes(), rawData.Bytes()} {
		for _, out := range []any{nil, 5, (*int)(nil), (*[]byte)(nil), (*any)(nil), []byte{}} {
			if err := Decode(data, out); err == nil {
				t.Errorf("Decode(%q, %#v) succeeded", data, out)
			}
		}
	}
}

func TestUnserializable(t *testing.T) {
	type withChan struct {
		Name string
		C    chan int
	}
	type withFunc struct{ F func() }
	type outer struct {
		N  int
		In *withChan
	}
	type outer2 struct{ W withChan }
	type withHiddenChan struct {
		N int
		c chan int
	}
	tests := []struct {
		name string
		v    any
		typ  string
	}{
		{"chan", make(chan int), "chan int"},
		{"func", func() {}, "func()"},
		{"unsafe.Pointer", unsafe.Pointer(nil), "unsafe.Pointer"},
		{"struct with chan", withChan{Name: "x"}, "field C is chan int"},
		{"struct with nil func", withFunc{}, "func()"},
		{"deep field", []outer{{In: &withChan{}}}, "withChan (field C is chan int)"},
		{"deep field value", []struct{ O outer2 }{{}}, "withChan (field C is chan int)"},
		{"map with func", map[string]any{"ok": 1, "f": func(int) {}}, "func(int)"},
		{"slice with chan", []any{1, make(chan string)}, "chan string"},
		{"nested interface", []any{map[string]any{"x": []any{func() {}}}}, "func()"},
		{"pointer to chan", new(chan bool), "chan bool"},
		{"complex", complex(1, 2), "complex128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.v)
			if !errors.Is(err, ErrUnserializable) {
				t.Fatalf("got %v, want ErrUnserializable", err)
			}
			if !strings.Contains(err.Error(), tt.typ) {
				t.Errorf("error %q does not name %s", err, tt.typ)
			}
		})
	}
	// The library encodes a nil pointer as null without looking at its type.
	if _, err := Encode(outer{}); err != nil {
		t.Fatal(err)
	}
	// An unexported field would be lost, whatever its type: refused.
	if _, err := Encode(withHiddenChan{N: 1, c: make(chan int)}); !errors.Is(err, ErrUnserializable) ||
		!strings.Contains(err.Error(), "codec.withHiddenChan.c ") {
		t.Fatalf("unexported chan field: got %v, want ErrUnserializable naming it", err)
	}
}

func TestLargeAndDeep(t *testing.T) {
	big := make([]any, 300_000) // over the library's default 131072 limit
	for i := range big {
		big[i] = i
	}
	p, err := Encode(big)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	if err := Decode(p.Bytes(), &got); err != nil || len(got) != len(big) || got[len(got)-1] != len(big)-1 {
		t.Fatalf("len %d, %v", len(got), err)
	}

	var deep any = "leaf"
	for range 200 { // over the library's default 32 levels
		deep = []any{deep}
	}
	if got := roundTrip(t, deep); !reflect.DeepEqual(got, deep) {
		t.Fatal("deep value changed")
	}

	// Past the nesting limit data is rejected, and quickly: the library
	// decodes tag chains in quadratic time.
	for _, b := range []byte{0x81, 0xd2} { // array of one; tag 18
		data := append([]byte{tagCBOR}, bytes.Repeat([]byte{b}, 60000)...)
		data = append(data, 0x01)
		var v any
		if err := Decode(data, &v); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("nested 0x%x: got %v, want ErrCorrupt", b, err)
		}
	}
}

func TestPayload(t *testing.T) {
	src := []byte("body")
	p, _ := Encode(src)
	b := p.Bytes()
	if len(b) != p.Len() || !bytes.Equal(b[:rawHeaderLen], p.Header) || !bytes.Equal(b[rawHeaderLen:], src) {
		t.Fatalf("Bytes() = %q", b)
	}
	b[rawHeaderLen] = 'X'
	if src[0] != 'b' {
		t.Fatal("Bytes aliases the source")
	}
	if b2 := p.Bytes(); &b2[0] == &b[0] {
		t.Fatal("Bytes reused memory")
	}

	dst := make([]byte, p.Len()+3)
	if n := p.CopyTo(dst); n != p.Len() || !bytes.Equal(dst[:n], p.Bytes()) {
		t.Fatalf("CopyTo = %d, %q", n, dst)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("CopyTo into a short buffer did not panic")
		}
	}()
	p.CopyTo(make([]byte, p.Len()-1))
}

func TestConcurrent(t *testing.T) {
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 200 {
				v := sample{Name: fmt.Sprint(g), Count: i, Tags: []string{"t"}}
				got := sample{}
				p, err := Encode(v)
				if err == nil {
					err = Decode(p.Bytes(), &got)
				}
				if err == nil && !reflect.DeepEqual(got, v) {
					err = fmt.Errorf("got %+v, want %+v", got, v)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// fuzzStruct is a decoding target with a bit of everything.
type fuzzStruct struct {
	I  int
	S  string
	F  []float64
	M  map[string]any
	P  *inner
	R  ref
	A  [2]uint8
	T  time.Time
	Xs []sample
}

func FuzzDecode(f *testing.F) {
	seeds := []any{
		0, -1, 1 << 40, uint64(math.MaxUint64), 1.5, math.NaN(), "seed", "", true, nil,
		[]byte("abc"), []float64{1, 2}, []int32{3}, Vec{4}, []uint16{},
		sample{Name: "n", Tags: []string{"x"}, Inner: &inner{A: 1}},
		holder{R: ref{ID: 1}, Rs: []ref{{ID: 2}}},
		map[string]any{"k": []any{1, "v", 2.5}},
		fuzzStruct{I: 1, F: []float64{1}, T: time.Unix(1, 2).UTC()},
	}
	for _, v := range seeds {
		p, err := Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p.Bytes())
	}
	f.Add([]byte{})
	f.Add([]byte{tagRaw, codeFloat64, 0, 0, 8, 0, 0, 0, 1})
	f.Add([]byte{tagCBOR, 0x9f, 0x9f, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		targets := []func() any{
			func() any { return new(any) },
			func() any { return new([]float64) },
			func() any { return new(Vec) },
			func() any { return new([]byte) },
			func() any { return new([]int) },
			func() any { return new(int) },
			func() any { return new(int64) },
			func() any { return new(float64) },
			func() any { return new(string) },
			func() any { return new(bool) },
			func() any { return new(fuzzStruct) },
			func() any { return new(ref) },
		}
		for _, mk := range targets {
			out := mk()
			err := Decode(data, out)
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTypeMismatch) {
				t.Fatalf("Decode into %T: unclassified error %v", out, err)
			}
			if err == nil {
				// Whatever decoded must encode again without panicking.
				_, _ = Encode(reflect.ValueOf(out).Elem().Interface())
			}
			// Differential check of the hand-written scalar decoders.
			if len(data) == 0 || data[0] != tagCBOR {
				continue
			}
			lib := mk()
			libErr := decMode.Unmarshal(data[1:], lib)
			if (err == nil) != (libErr == nil) {
				t.Fatalf("Decode into %T: err %v, library err %v", out, err, libErr)
			}
			// Only scalars can come from the fast paths; composite values
			// came from the library both times.
			a, b := reflect.ValueOf(out).Elem().Interface(), reflect.ValueOf(lib).Elem().Interface()
			if err == nil && isScalar(b) && !equal(a, b) && fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("Decode into %T: %#v, library %#v", out, a, b)
			}
		}
	})
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, bool, int, int64, float64, string:
		return true
	}
	return false
}

func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	sinkPayload Payload
	sinkInt     int
	sinkFloats  []float64
)

func TestDecodeCopies(t *testing.T) {
	src := []float64{1, 1, 1, 1}
	p, err := Encode(src)
	if err != nil {
		t.Fatal(err)
	}
	buf := alignedBytes(p.Len())
	p.CopyTo(buf)
	var got []float64
	if err := Decode(buf, &got); err != nil {
		t.Fatal(err)
	}
	var v Vec
	if err := Decode(buf, &v); err != nil {
		t.Fatal(err)
	}
	var viewed []float64
	if err := DecodeView(buf, &viewed); err != nil {
		t.Fatal(err)
	}
	q, _ := Encode([]float64{7, 7, 7, 7})
	q.CopyTo(buf) // the input is reused for another value
	if !reflect.DeepEqual(got, src) || !reflect.DeepEqual([]float64(v), src) {
		t.Fatalf("Decode results changed with their input: %v, %v", got, v)
	}
	if viewed[0] != 7 {
		t.Fatalf("DecodeView result %v does not follow its input", viewed)
	}
}
