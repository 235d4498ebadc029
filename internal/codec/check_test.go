//lint:file-ignore U1000 the unexported fields are what these tests are about: they are never read

package codec

import (
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"
)

type point struct {
	X int
	y int
}

type polygon struct {
	Name   string
	Points []*point
}

type base struct {
	ID     int
	secret string
}

type derived struct {
	base
	N int
}

type myInt int

type embedsInt struct {
	myInt
	X int
}

// node is recursive and loses val.
type node struct {
	Next *node
	val  int
}

// list is recursive and sent whole.
type list struct {
	Next *list
	V    int
}

// cycleA and cycleB reach each other; cycleA loses x. cycleC and cycleD
// are the same shape, checked in the other order.
type cycleA struct {
	B *cycleB
	x int
}

type cycleB struct{ A *cycleA }

type cycleC struct {
	D *cycleD
	x int
}

type cycleD struct{ C *cycleC }

// tree is recursive and holds interfaces at every level.
type tree struct {
	Kids []tree
	Meta any
}

// sealed keeps its fields to itself and encodes them by hand.
type sealed struct{ n int }

func (s sealed) MarshalBinary() ([]byte, error) { return []byte{byte(s.n)}, nil }

func (s *sealed) UnmarshalBinary(b []byte) error {
	if len(b) != 1 {
		return errors.New("sealed: want one byte")
	}
	s.n = int(b[0])
	return nil
}

type Public struct{ ID int }

type privateButExported struct{ ID int }

type whole struct {
	Public
	privateButExported `cbor:"inner"`
	N                  int
	Skip               int `cbor:"-"`
	skip               int `cbor:"-"`
	jskip              int `json:"-"`
	empty              struct{}
	When               time.Time
	Big                big.Int
	BigP               *big.Int
	S                  sealed
	R                  ref
	Any                any
	_                  int
}

type asArray struct {
	_ struct{} `cbor:",toarray"`
	A int
	B string
}

func TestUnexportedFieldIsRefused(t *testing.T) {
	var deep any
	deep = &deep // a cycle through an interface
	tests := []struct {
		name string
		v    any
		want []string // each must appear in the error
	}{
		{"struct", point{X: 1, y: 2}, []string{"field codec.point.y is unexported", "give codec.point a MarshalCBOR"}},
		{"pointer", &point{}, []string{"codec.point.y"}},
		{"nil pointer", (*point)(nil), []string{"codec.point.y"}},
		{"in a slice of pointers", polygon{Points: []*point{{X: 1}}}, []string{"codec.point.y", "reached as codec.polygon.Points[].y"}},
		{"map value", map[string]point{"a": {}}, []string{"codec.point.y", "map[string]codec.point[].y"}},
		{"map key", map[point]int{}, []string{"codec.point.y", "[key].y"}},
		{"array", [2]point{}, []string{"codec.point.y"}},
		{"in an any", []any{1, "two", point{}}, []string{"codec.point.y", "reached as []interface {}[2](codec.point).y"}},
		{"in a map of any", map[string]any{"p": &point{}}, []string{"codec.point.y", "(*codec.point).y"}},
		{"in an any field", whole{Any: []point{{}}}, []string{"codec.point.y", "codec.whole.Any([]codec.point)[].y"}},
		{"embedded unexported struct", derived{N: 1}, []string{"codec.base.secret", "reached as codec.derived.base.secret"}},
		{"embedded unexported non-struct", embedsInt{myInt: 3}, []string{"codec.embedsInt.myInt"}},
		{"recursive", node{Next: &node{}}, []string{"codec.node.val"}},
		{"cycle, found first", cycleA{}, []string{"codec.cycleA.x"}},
		{"cycle through an interface", deep, []string{"nested more than"}},
		{"in a recursive type's any", tree{Kids: []tree{{}, {Meta: []any{point{}}}}}, []string{"codec.point.y", "codec.tree.Kids[1].Meta([]interface {})[0](codec.point).y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.v)
			if !errors.Is(err, ErrUnserializable) {
				t.Fatalf("Encode(%T): got %v, want ErrUnserializable", tt.v, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// Either order of a mutual recursion finds the field.
	if err := CheckType(reflect.TypeFor[cycleB]()); !errors.Is(err, ErrUnserializable) || !strings.Contains(err.Error(), "codec.cycleA.x") {
		t.Errorf("cycleB after cycleA: %v", err)
	}
	if err := CheckType(reflect.TypeFor[cycleD]()); !errors.Is(err, ErrUnserializable) || !strings.Contains(err.Error(), "codec.cycleD.C.x") {
		t.Errorf("cycleD first: %v", err)
	}
	if err := CheckType(reflect.TypeFor[cycleC]()); !errors.Is(err, ErrUnserializable) || !strings.Contains(err.Error(), "codec.cycleC.x") {
		t.Errorf("cycleC after cycleD: %v", err)
	}
}

func TestWholeValuesAreAccepted(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC)
	w := whole{
		Public:             Public{ID: 1},
		privateButExported: privateButExported{ID: 2},
		N:                  3,
		When:               when,
		BigP:               big.NewInt(-42),
		S:                  sealed{n: 7},
		R:                  ref{ID: 9, Owner: "o"},
		Any:                []any{int64(1), "x"},
	}
	w.Big.SetInt64(1 << 40)
	got := roundTrip(t, w).(whole)
	if got.Public.ID != 1 || got.privateButExported.ID != 2 || got.N != 3 || !got.When.Equal(when) ||
		got.Big.Int64() != 1<<40 || got.BigP.Int64() != -42 || got.S.n != 7 || got.R != w.R ||
		!reflect.DeepEqual(got.Any, w.Any) {
		t.Fatalf("round trip: got %+v, want %+v", got, w)
	}
	// Fields tagged "-" are left out, as asked.
	w.Skip, w.skip, w.jskip = 1, 2, 3
	if got := roundTrip(t, w).(whole); got.Skip != 0 || got.skip != 0 || got.jskip != 0 {
		t.Fatalf("tagged fields were sent: %+v", got)
	}
	if got := roundTrip(t, asArray{A: 1, B: "b"}); got != (asArray{A: 1, B: "b"}) {
		t.Fatalf("toarray: %+v", got)
	}
	if got := roundTrip(t, list{V: 1, Next: &list{V: 2}}).(list); got.V != 1 || got.Next.V != 2 {
		t.Fatalf("recursive: %+v", got)
	}
	if got := roundTrip(t, derivedOK{base2: base2{ID: 4}, N: 5}); got != (derivedOK{base2: base2{ID: 4}, N: 5}) {
		t.Fatalf("promoted fields of an unexported embedded struct: %+v", got)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[whole](), reflect.TypeFor[[]any](), reflect.TypeFor[*list](), reflect.TypeFor[struct{}]()} {
		if err := CheckType(typ); err != nil {
			t.Errorf("CheckType(%v): %v", typ, err)
		}
	}
	if err := CheckType(reflect.TypeFor[map[string][]point]()); !errors.Is(err, ErrUnserializable) {
		t.Errorf("CheckType of a map of slices of point: %v", err)
	}
}

type base2 struct{ ID int }

type derivedOK struct {
	base2
	N int
}

func TestVerdictIsCached(t *testing.T) {
	var v any = list{V: 1}
	if err := checkValue(v); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = checkValue(v) }); n != 0 {
		t.Fatalf("checking a known type allocates %v times", n)
	}
}

func BenchmarkCheckSmallStruct(b *testing.B) {
	var v any = benchStruct
	b.ReportAllocs()
	for b.Loop() {
		if err := checkValue(v); err != nil {
			b.Fatal(err)
		}
	}
}
