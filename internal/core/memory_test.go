package core

import (
	"errors"
	"testing"
	"time"
)

func TestOOMBackoff(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	for i, w := range want {
		if got := oomBackoff(i + 1); got != w {
			t.Errorf("oomBackoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := oomBackoff(60); got != oomBackoffMax {
		t.Errorf("oomBackoff(60) = %v, want the cap %v", got, oomBackoffMax)
	}
}

func TestOutOfMemoryKind(t *testing.T) {
	e := &TaskError{Task: "hog", Kind: KindOutOfMemory, Message: "node used 99%"}
	if !errors.Is(e, ErrOutOfMemory) || !errors.Is(e, ErrTaskFailed) || errors.Is(e, ErrWorkerDied) {
		t.Fatalf("errors.Is on %v", e)
	}
	if ErrorType(KindOutOfMemory) != "OUT_OF_MEMORY" {
		t.Fatalf("ErrorType = %s", ErrorType(KindOutOfMemory))
	}
}
