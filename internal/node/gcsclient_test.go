package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPruneBinariesKeepsTheRecentAndTheLastUsed(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	// Eight executables last used 1 to 8 hours ago, two used within the
	// grace, and a download in progress.
	for i := 1; i <= 8; i++ {
		writeAged(t, dir, "old"+string(rune('0'+i)), now.Add(-time.Duration(i)*time.Hour))
	}
	writeAged(t, dir, "fresh1", now.Add(-time.Minute))
	writeAged(t, dir, "fresh2", now)
	writeAged(t, dir, ".part-123", now.Add(-48*time.Hour))

	pruneBinaries(dir, now)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".part-123", "fresh1", "fresh2", "old1", "old2", "old3", "old4"}
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}

func writeAged(t *testing.T, dir, name string, used time.Time) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, used, used); err != nil {
		t.Fatal(err)
	}
}
