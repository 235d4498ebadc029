package codec

import "testing"

// Benchmarks of encoding and decoding the values tasks pass most.

func BenchmarkEncodeInt(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		sinkPayload, _ = Encode(i + 100000)
	}
}

func BenchmarkDecodeInt(b *testing.B) {
	p, _ := Encode(123456789)
	data := p.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &sinkInt); err != nil {
			b.Fatal(err)
		}
	}
}

// A local int, as Get[int] decodes: Decode's target escapes to the heap,
// DecodeValue's does not.
func BenchmarkDecodeIntLocal(b *testing.B) {
	p, _ := Encode(123456789)
	data := p.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		var v int
		if err := Decode(data, &v); err != nil || v != 123456789 {
			b.Fatal(v, err)
		}
	}
}

func BenchmarkDecodeValueInt(b *testing.B) {
	p, _ := Encode(123456789)
	data := p.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		v, err := DecodeValue[int](data)
		if err != nil || v != 123456789 {
			b.Fatal(v, err)
		}
	}
}

func BenchmarkDecodeIntAny(b *testing.B) {
	p, _ := Encode(123456789)
	data := p.Bytes()
	b.ReportAllocs()
	var v any
	for b.Loop() {
		if err := Decode(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeFloat64(b *testing.B) {
	b.ReportAllocs()
	f := 1.0
	for b.Loop() {
		f += 0.5
		sinkPayload, _ = Encode(f)
	}
}

func BenchmarkEncodeString(b *testing.B) {
	s := "a moderately sized task argument"
	b.ReportAllocs()
	for b.Loop() {
		sinkPayload, _ = Encode(s)
	}
}

func BenchmarkDecodeString(b *testing.B) {
	p, _ := Encode("a moderately sized task argument")
	data := p.Bytes()
	b.ReportAllocs()
	var s string
	for b.Loop() {
		if err := Decode(data, &s); err != nil {
			b.Fatal(err)
		}
	}
}

var benchStruct = sample{
	Name: "task-17", Count: 3, Ratio: 0.25, Tags: []string{"gpu", "batch"},
	Inner: &inner{A: 9, B: []string{"x"}}, Scores: map[string]int{"p50": 12},
}

func BenchmarkEncodeStruct(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkPayload, _ = Encode(benchStruct)
	}
}

func BenchmarkDecodeStruct(b *testing.B) {
	p, _ := Encode(benchStruct)
	data := p.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		var s sample
		if err := Decode(data, &s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeFloat64Slice1MiB(b *testing.B) {
	var src any = make([]float64, (1<<20)/8) // boxed once, as callers hold an any
	b.ReportAllocs()
	for b.Loop() {
		sinkPayload, _ = Encode(src)
	}
}

func BenchmarkDecodeFloat64Slice1MiB(b *testing.B) {
	p, _ := Encode(make([]float64, (1<<20)/8))
	data := alignedBytes(p.Len())
	p.CopyTo(data)
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &sinkFloats); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeFloat64Slice1MiBMisaligned(b *testing.B) {
	p, _ := Encode(make([]float64, (1<<20)/8))
	data := alignedBytes(p.Len() + 1)[1:]
	p.CopyTo(data)
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &sinkFloats); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeCopies: what Decode returns never shares memory with its
// input, so a caller may keep it after the input is reused.
