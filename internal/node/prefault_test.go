package node

import "testing"

// While busy says so, the activity the prefault mapper watches moves on
// every look, so that it maps nothing; once busy ends, it stands still
// with the messages.
func TestQuietUnlessBusy(t *testing.T) {
	var msgs uint64 = 7
	busy := true
	act := quietUnless(func() uint64 { return msgs }, func() bool { return busy })
	a, b := act(), act()
	if a == b {
		t.Fatalf("busy, two looks saw the same activity %d", a)
	}
	busy = false
	if c, d := act(), act(); c != d {
		t.Fatalf("quiet, two looks saw %d then %d", c, d)
	}
	msgs++
	if c, d := act(), act(); c != d {
		t.Fatalf("after a message, two looks saw %d then %d", c, d)
	}
	if got := quietUnless(func() uint64 { return msgs }, nil)(); got != msgs {
		t.Fatalf("with no busy, activity %d, want %d", got, msgs)
	}
}
