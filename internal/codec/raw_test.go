package codec

import (
	"math"
	"reflect"
	"testing"
	"unsafe"
)

func TestRawZeroCopy(t *testing.T) {
	src := []float64{1.5, -2, 3e10, math.Pi}
	p, err := Encode(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Header) != rawHeaderLen || p.Header[0] != tagRaw {
		t.Fatalf("header %x", p.Header)
	}
	if unsafe.Pointer(&p.Body[0]) != unsafe.Pointer(&src[0]) || len(p.Body) != 8*len(src) {
		t.Fatal("Body does not alias the source slice")
	}

	buf := alignedBytes(p.Len())
	if n := p.CopyTo(buf); n != p.Len() {
		t.Fatalf("CopyTo wrote %d, want %d", n, p.Len())
	}
	var got []float64
	if err := DecodeView(buf, &got); err != nil {
		t.Fatal(err)
	}
	if unsafe.Pointer(&got[0]) != unsafe.Pointer(&buf[rawHeaderLen]) {
		t.Fatal("decoded slice does not alias the input")
	}
	if len(got) != len(src) || cap(got) != len(src) || !reflect.DeepEqual(got, src) {
		t.Fatalf("got %v (cap %d), want %v", got, cap(got), src)
	}

	// Named slice types go through reflection, with the same guarantees.
	var v Vec
	if err := DecodeView(buf, &v); err != nil {
		t.Fatal(err)
	}
	if unsafe.Pointer(&v[0]) != unsafe.Pointer(&buf[rawHeaderLen]) || !reflect.DeepEqual([]float64(v), src) {
		t.Fatalf("Vec decode: %v, aliasing %v", v, unsafe.Pointer(&v[0]) == unsafe.Pointer(&buf[rawHeaderLen]))
	}
	pv, err := Encode(Vec(src))
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.Pointer(&pv.Body[0]) != unsafe.Pointer(&src[0]) {
		t.Fatal("Vec Body does not alias the source slice")
	}

	// Decoding into *any copies.
	var a any
	if err := Decode(buf, &a); err != nil {
		t.Fatal(err)
	}
	if af := a.([]float64); unsafe.Pointer(&af[0]) == unsafe.Pointer(&buf[rawHeaderLen]) || !reflect.DeepEqual(af, src) {
		t.Fatalf("*any decode: %v", af)
	}
}

func TestRawMisaligned(t *testing.T) {
	src := []float64{1, 2, 3}
	p, err := Encode(src)
	if err != nil {
		t.Fatal(err)
	}
	buf := alignedBytes(p.Len() + 1)[1:]
	p.CopyTo(buf)

	var got []float64
	if err := Decode(buf, &got); err != nil {
		t.Fatal(err)
	}
	var v Vec
	if err := Decode(buf, &v); err != nil {
		t.Fatal(err)
	}
	for _, s := range [][]float64{got, v} {
		if !reflect.DeepEqual(s, src) {
			t.Fatalf("got %v, want %v", s, src)
		}
		if uintptr(unsafe.Pointer(&s[0]))%8 != 0 {
			t.Fatal("copied slice is misaligned")
		}
	}
	buf[rawHeaderLen] ^= 0xff
	if got[0] != 1 || v[0] != 1 {
		t.Fatal("misaligned decode aliases the input")
	}
}

func TestRawEmpty(t *testing.T) {
	for _, src := range [][]int32{nil, {}} {
		p, err := Encode(src)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Body) != 0 || p.Len() != rawHeaderLen {
			t.Fatalf("Payload %+v", p)
		}
		got := []int32{9}
		if err := Decode(p.Bytes(), &got); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("got %#v, %v", got, err)
		}
	}
}
