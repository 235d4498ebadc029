package rayo

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

// hiddenPoint cannot be sent whole: y is unexported.
type hiddenPoint struct {
	X int
	y int
}

// Stamp is embedded in sendable: its fields are promoted.
type Stamp struct{ At time.Time }

// sendable is sent whole although it has unexported parts.
type sendable struct {
	Stamp
	_     struct{}
	Big   *big.Int
	Ref   Ref[int]
	Pad   struct{}
	cache map[string]int `cbor:"-"` // deliberately left out
	Tags  []string
}

// Keeper is an actor that hands back what it is given.
type Keeper struct{}

// Echo returns v.
func (*Keeper) Echo(v any) any { return v }

// Make returns n bytes.
func (*Keeper) Make(n int) []byte { return make([]byte, n) }

// Take would receive a hiddenPoint.
func (*Keeper) Take(p hiddenPoint) int { return p.X }

var (
	echoAny      = Func1(func(v any) any { return v })
	makesHidden  = Func0(func() any { return []any{1, &hiddenPoint{X: 1, y: 2}} })
	takesHidden  = Func1(func(p hiddenPoint) int { return p.X + p.y })
	givesHidden  = Func0(func() map[string][]hiddenPoint { return nil })
	takesBoxed   = Func1(func(b struct{ P *hiddenPoint }) int { return 0 })
	passSendable = Func1(func(s sendable) sendable {
		v, err := Get(context.Background(), s.Ref)
		if err != nil {
			panic(err)
		}
		s.Tags = append(s.Tags, "seen", strings.Repeat("v", v))
		return s
	})
	newKeeper  = Actor0(func() *Keeper { return &Keeper{} })
	keeperEcho = Method1(newKeeper, (*Keeper).Echo)
	keeperTake = Method1(newKeeper, (*Keeper).Take)
	keeperMake = Method1(newKeeper, (*Keeper).Make)
	// putInWorker puts n bytes from a worker and reports the error.
	putInWorker = Func1(func(n int) string {
		r := Put(context.Background(), make([]byte, n))
		if !errors.Is(r.Err(), ErrStoreFull) {
			return fmt.Sprintf("not ErrStoreFull: %v", r.Err())
		}
		return r.Err().Error()
	})
)

// wantHidden checks that err is ErrUnserializable naming hiddenPoint.y.
func wantHidden(t *testing.T, what string, err error, more ...string) {
	t.Helper()
	if !errors.Is(err, ErrUnserializable) {
		t.Fatalf("%s: got %v, want ErrUnserializable", what, err)
	}
	for _, w := range append([]string{"rayo.hiddenPoint.y"}, more...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not say %q", what, err, w)
		}
	}
}

func TestUnexportedFieldsAreRefused(t *testing.T) {
	ctx := ctxT(t)
	// Put, at once and from Get.
	r := Put(ctx, hiddenPoint{X: 1, y: 2})
	wantHidden(t, "Put", r.Err())
	_, err := Get(ctx, r)
	wantHidden(t, "Get of the refused Put", err)
	wantHidden(t, "Put nested", Put(ctx, map[string][]*hiddenPoint{"a": nil}).Err(), "map[string][]*rayo.hiddenPoint[][].y")
	wantHidden(t, "Put inside an any", Put[any](ctx, []any{"ok", map[int]any{1: hiddenPoint{}}}).Err())

	// Arguments held by interfaces are checked when sent.
	wantHidden(t, "Remote argument", echoAny.Remote(V[any](hiddenPoint{})).Err())
	wantHidden(t, "Remote nested argument", echoAny.Remote(V[any](struct{ Ps []any }{Ps: []any{&hiddenPoint{}}})).Err(), "Ps[0](*rayo.hiddenPoint).y")

	// Parameters and results are refused from the declaration on.
	wantHidden(t, "parameter", takesHidden.Remote(V(hiddenPoint{X: 1})).Err(), "parameter 1")
	wantHidden(t, "nested parameter", takesBoxed.Remote(V(struct{ P *hiddenPoint }{})).Err(), "parameter 1")
	wantHidden(t, "result", givesHidden.Remote().Err(), "result 1")

	// A result held by an interface fails the task, from Get.
	_, err = Get(ctx, makesHidden.Remote())
	wantHidden(t, "task result", err, "result 0")
	var te *TaskError
	if !errors.As(err, &te) {
		t.Fatalf("task result: %T is not a *TaskError", err)
	}

	// Actor methods: a parameter at declaration, a result in the worker.
	k := newKeeper.Remote()
	defer func() { _ = Kill(ctx, k) }()
	wantHidden(t, "method parameter", keeperTake.Remote(k, V(hiddenPoint{})).Err(), "parameter 2")
	wantHidden(t, "method argument", keeperEcho.Remote(k, V[any](hiddenPoint{})).Err())
	if v, err := Get(ctx, keeperEcho.Remote(k, V[any]("fine"))); err != nil || v != "fine" {
		t.Fatalf("actor after refusals: %v %v", v, err)
	}
}

func TestWholeValuesTravel(t *testing.T) {
	ctx := ctxT(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	n, _ := new(big.Int).SetString("123456789012345678901234567890", 10)
	in := sendable{Stamp: Stamp{At: at}, Big: n, Ref: Put(ctx, 3), Tags: []string{"a"}, cache: map[string]int{"x": 1}}
	out, err := Get(ctx, passSendable.Remote(V(in)))
	if err != nil {
		t.Fatal(err)
	}
	if !out.At.Equal(at) || out.Big.Cmp(n) != 0 || strings.Join(out.Tags, ",") != "a,seen,vvv" || out.cache != nil {
		t.Fatalf("round trip: got %+v", out)
	}
	if v, err := Get(ctx, out.Ref); err != nil || v != 3 {
		t.Fatalf("ref inside: %v %v", v, err)
	}
	// An actor handle inside a value.
	k := newKeeper.Remote()
	defer func() { _ = Kill(ctx, k) }()
	got, err := Get(ctx, Put(ctx, struct{ K Actor[*Keeper] }{K: k}))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Get(ctx, keeperEcho.Remote(got.K, V[any](int64(5)))); err != nil || v != int64(5) {
		t.Fatalf("handle inside a value: %v %v", v, err)
	}
}

// An object larger than the whole store fails with ErrStoreFull, naming
// its size and the store's capacity, from every path that stores one.
func TestObjectLargerThanStoreIsStoreFull(t *testing.T) {
	const capacity = 16 << 20
	restart(t, NumCPUs(1), ObjectStoreMemory(capacity))
	ctx := ctxT(t)
	const n = 20 << 20 // bytes; the raw layout adds an 8-byte header
	sizes := []string{fmt.Sprintf("needs %d bytes", n+8), fmt.Sprintf("capacity is %d", capacity)}
	says := func(what, msg string) {
		t.Helper()
		for _, w := range sizes {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", what, msg, w)
			}
		}
	}
	want := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrStoreFull) {
			t.Fatalf("%s: got %v, want ErrStoreFull", what, err)
		}
		says(what, err.Error())
	}
	r := Put(ctx, make([]byte, n))
	want("Put", r.Err())
	_, err := Get(ctx, r)
	want("Get of the refused Put", err)

	_, err = Get(ctx, makeVec.Remote(V(n/8), V(1.0)))
	want("task result", err)

	msg, err := Get(ctx, putInWorker.Remote(V(n)))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(msg, "not ErrStoreFull") {
		t.Fatalf("Put in a worker: %s", msg)
	}
	says("Put in a worker", msg)

	k := newKeeper.Remote()
	defer func() { _ = Kill(ctx, k) }()
	_, err = Get(ctx, keeperMake.Remote(k, V(n)))
	want("actor method result", err)

	// What fits still does.
	if b, err := Get(ctx, keeperMake.Remote(k, V(1<<20))); err != nil || len(b) != 1<<20 {
		t.Fatalf("a fitting result after the refusals: %d %v", len(b), err)
	}
	if b, err := Get(ctx, Put(ctx, make([]byte, 8<<20))); err != nil || len(b) != 8<<20 {
		t.Fatalf("a fitting Put after the refusals: %d %v", len(b), err)
	}
}
