package rayo

import (
	"errors"
	"fmt"
	"testing"

	"github.com/rayo-dev/rayo/internal/core"
)

// TestTaskErrorKinds checks, for every kind the runtime reports, that the
// public TaskError carries it as an exported ErrorKind, and that errors.Is
// and errors.As see the kind's sentinel and ErrTaskFailed, also through a
// wrapping error.
func TestTaskErrorKinds(t *testing.T) {
	cases := []struct {
		core     string
		kind     ErrorKind
		sentinel error // nil: the kind has none
	}{
		{core.KindApp, KindApp, nil},
		{core.KindPanic, KindPanic, nil},
		{core.KindWorkerDied, KindWorkerDied, ErrWorkerDied},
		{core.KindCancelled, KindCancelled, ErrTaskCancelled},
		{core.KindUnknownFunction, KindUnknownFunction, ErrUnknownFunction},
		{core.KindType, KindTypeMismatch, ErrTypeMismatch},
		{core.KindStoreFull, KindStoreFull, ErrStoreFull},
		{core.KindInfeasible, KindInfeasible, ErrInfeasible},
		{core.KindOwnerDied, KindOwnerDied, ErrOwnerDied},
		{core.KindSystem, KindSystem, nil},
		{core.KindActorDied, KindActorDied, ErrActorDied},
		{core.KindObjectLost, KindObjectLost, ErrObjectLost},
		{core.KindOutOfMemory, KindOutOfMemory, ErrOutOfMemory},
		{core.KindUnserializable, KindUnserializable, ErrUnserializable},
		{core.KindNodeFenced, KindNodeFenced, ErrNodeFenced},
	}
	all := []error{ErrWorkerDied, ErrTaskCancelled, ErrUnknownFunction, ErrTypeMismatch, ErrStoreFull,
		ErrInfeasible, ErrOwnerDied, ErrActorDied, ErrObjectLost, ErrOutOfMemory, ErrUnserializable, ErrNodeFenced}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			in := &core.TaskError{Task: "f", Kind: tc.core, Message: "m", Stack: "s", PID: 7}
			err := fmt.Errorf("outer: %w", publicErr(in))
			var te *TaskError
			if !errors.As(err, &te) {
				t.Fatalf("errors.As(%v, *TaskError) = false", err)
			}
			if te.Kind != tc.kind || te.Task != "f" || te.Message != "m" || te.Stack != "s" || te.PID != 7 {
				t.Fatalf("TaskError = %+v, want kind %q and the runtime's fields", te, tc.kind)
			}
			if !errors.Is(err, ErrTaskFailed) {
				t.Errorf("errors.Is(%v, ErrTaskFailed) = false", err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.sentinel)
			}
			if errors.Unwrap(te) != tc.sentinel {
				t.Errorf("Unwrap = %v, want %v", errors.Unwrap(te), tc.sentinel)
			}
			for _, other := range all {
				if other != tc.sentinel && errors.Is(err, other) {
					t.Errorf("errors.Is(%v, %v) = true for kind %s", err, other, tc.kind)
				}
			}
		})
	}
}

// TestTaskErrorMessage checks the text of each shape of TaskError.
func TestTaskErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		e    TaskError
		want string
	}{
		{TaskError{Task: "f", Kind: KindPanic, Message: "boom", PID: 3}, "rayo: task f panicked (pid 3): boom"},
		{TaskError{Task: "f", Kind: KindApp, Message: "bad", PID: 3}, "rayo: task f failed (pid 3): bad"},
		{TaskError{Task: "f", Kind: KindCancelled, Message: "cancelled"}, "rayo: task f: cancelled"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestPublicErrKeepsOthers checks that errors other than the runtime's
// TaskError pass through unchanged.
func TestPublicErrKeepsOthers(t *testing.T) {
	if publicErr(nil) != nil {
		t.Fatal("publicErr(nil) != nil")
	}
	if err := publicErr(ErrObjectLost); err != ErrObjectLost {
		t.Fatalf("publicErr(ErrObjectLost) = %v", err)
	}
}
