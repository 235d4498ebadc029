package node

import "testing"

// While busy says so, the activity the prefault mapper watches moves on
// every look, so that it maps nothing; once busy ends, it stands still
// until a message or a call of the runtime.
func TestQuietUnlessBusy(t *testing.T) {
	var msgs, calls uint64 = 7, 3
	busy := true
	act := quietUnless(func() bool { return busy }, func() uint64 { return msgs }, func() uint64 { return calls })
	a, b := act(), act()
	if a == b {
		t.Fatalf("busy, two looks saw the same activity %d", a)
	}
	busy = false
	if c, d := act(), act(); c != d {
		t.Fatalf("quiet, two looks saw %d then %d", c, d)
	}
	before := act()
	msgs++
	if c, d := act(), act(); c == before || c != d {
		t.Fatalf("after a message, looks saw %d, then %d and %d", before, c, d)
	}
	before = act()
	calls++
	if c, d := act(), act(); c == before || c != d {
		t.Fatalf("after a call, looks saw %d, then %d and %d", before, c, d)
	}
	if got := quietUnless(nil, func() uint64 { return msgs }, func() uint64 { return calls })(); got != msgs+calls {
		t.Fatalf("with no busy, activity %d, want %d", got, msgs+calls)
	}
}
