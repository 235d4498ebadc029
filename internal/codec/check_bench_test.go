package codec

import "testing"

// Values holding interfaces are the ones Encode looks into each time.
var (
	benchAnySlice = func() any {
		s := make([]any, 1000)
		for i := range s {
			if i%2 == 0 {
				s[i] = int64(i)
			} else {
				s[i] = "item"
			}
		}
		return s
	}()
	benchAnyStruct any = struct {
		Name string
		Meta map[string]any
	}{Name: "job", Meta: map[string]any{"retries": 3, "tags": []any{"a", "b"}}}
)

func BenchmarkEncodeAnySlice1000(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkPayload, _ = Encode(benchAnySlice)
	}
}

func BenchmarkEncodeStructWithAny(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkPayload, _ = Encode(benchAnyStruct)
	}
}

func BenchmarkCheckStructWithAny(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := checkValue(benchAnyStruct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckAnySlice1000(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := checkValue(benchAnySlice); err != nil {
			b.Fatal(err)
		}
	}
}
