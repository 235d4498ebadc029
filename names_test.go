package rayo

import (
	"errors"
	"strings"
	"testing"
)

func TestShortNames(t *testing.T) {
	for _, tc := range []struct{ sym, source, want string }{
		{"example.com/app/pkg.train", "/src/app/pkg/train.go:10", "train"},
		{"main.init.func2", "/src/app/cmd/audit/main.go:14", "audit/main.go:14"},
		{"example.com/app/pkg.glob..func1", "/src/app/pkg/jobs.go:7", "pkg/jobs.go:7"},
		{"main.run.func12", "main.go:3", "main.go:3"},
		{"main.functional", "/src/main.go:5", "functional"},
		{"main.init.func2", "", "main.init.func2"},
	} {
		if got := shortName(tc.sym, tc.source); got != tc.want {
			t.Errorf("shortName(%q, %q) = %q, want %q", tc.sym, tc.source, got, tc.want)
		}
	}
}

// A function literal's task is named by where its code is, in errors and
// in the state API alike.
func TestLiteralTaskIsNamedByItsSource(t *testing.T) {
	_, err := Get(ctxT(t), fails.Remote(V("named")))
	var te *TaskError
	if !errors.As(err, &te) || !strings.Contains(te.Task, "/rayo_test.go:") {
		t.Fatalf("task name %q (%v), want the file and line of fails", te.Task, err)
	}
}
