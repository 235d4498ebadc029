package testcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Attempts reads the attempts files ("attempts-<i>") that test drivers'
// tasks write in dir, one line per event ("begin|end NODE PID"): for each
// task, named prefix<i>, its lines.
func Attempts(t *testing.T, dir, prefix string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "attempts-*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		task := prefix + strings.TrimPrefix(filepath.Base(f), "attempts-")
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				out[task] = append(out[task], l)
			}
		}
	}
	return out
}

// WaitFor polls cond every 50 ms until it holds, failing the test after
// timeout with what cond said last.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %v; last seen:\n%s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling other processes
	}
}
