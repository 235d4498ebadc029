package node

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

func TestPruneSessions(t *testing.T) {
	root := t.TempDir()
	// Folders of drivers that are gone (pid 1<<30 cannot exist) and of
	// this one, which must stay.
	for i := 0; i < 5; i++ {
		dir := filepath.Join(root, fmt.Sprintf("s-%d-%d", 1<<30, i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mod := time.Now().Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(dir, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	mine := filepath.Join(root, fmt.Sprintf("s-%d-x", os.Getpid()))
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	// A joined driver's folder: gone with its driver, kept while it runs.
	for _, d := range []string{fmt.Sprintf("job-%d-ab12", 1<<30), fmt.Sprintf("job-%d-cd34", os.Getpid())} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	PruneSessions(root, 2)
	left, _ := os.ReadDir(root)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	want := []string{fmt.Sprintf("s-%d-3", 1<<30), fmt.Sprintf("s-%d-4", 1<<30), filepath.Base(mine), fmt.Sprintf("job-%d-cd34", os.Getpid())}
	sort.Strings(want)
	if fmt.Sprint(names) != fmt.Sprint(want) { // ReadDir sorts by name too
		t.Fatalf("left %v, want %v", names, want)
	}
}
