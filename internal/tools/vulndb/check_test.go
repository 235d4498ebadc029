package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const doc = `# findings

| id | status | what |
|---|---|---|
| GO-2026-6609 | closed | Range |
| GO-2026-6608 | mitigated | multipart |
| GO-2026-6607 | not-exposed | ECH |
`

// jsonReport is a govulncheck -format json stream: a config, an OSV, and
// findings at symbol, package and module level.
const jsonReport = `{"config":{"protocol_version":"v1.0.0"}}
{"osv":{"id":"GO-2026-6608"}}
{"finding":{"osv":"GO-2026-6608","trace":[{"module":"stdlib","package":"mime/multipart","function":"NextPart","receiver":"*Reader"},{"module":"github.com/rayo-dev/rayo","function":"submitJob"}]}}
{"finding":{"osv":"GO-2026-6607","trace":[{"module":"stdlib","package":"crypto/tls","function":"Handshake","receiver":"*Conn"}]}}
{"finding":{"osv":"GO-2026-6609","trace":[{"module":"stdlib","package":"net/http"}]}}
{"finding":{"osv":"GO-2026-9999","trace":[{"module":"stdlib"}]}}
`

func TestCheck(t *testing.T) {
	reviewed, err := readReviewed(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	found, err := reachable(strings.NewReader(jsonReport))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found["GO-2026-6608"] != "mime/multipart.Reader.NextPart" || found["GO-2026-6607"] != "crypto/tls.Conn.Handshake" {
		t.Fatalf("reachable %v, want the two symbol-level findings", found)
	}
	lines, err := check(found, reviewed)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 {
		t.Fatalf("lines %q", lines)
	}

	// A new reachable finding, a closed one reachable again, and a
	// reviewed one gone each fail, and the error names each.
	found["GO-2026-7000"] = "net/http.Foo"
	found["GO-2026-6609"] = "net/http.ServeContent"
	delete(found, "GO-2026-6607")
	_, err = check(found, reviewed)
	for _, want := range []string{"GO-2026-7000 is reachable", "GO-2026-6609 is marked closed but is reachable again", "GO-2026-6607 is listed as not-exposed but no longer reachable"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}

func TestCheckRefusesBadInput(t *testing.T) {
	for name, d := range map[string]string{
		"bad status": "| GO-2026-6609 | fine | x |\n",
		"twice":      "| GO-2026-6609 | closed | x |\n| GO-2026-6609 | closed | y |\n",
		"empty":      "# nothing reviewed\n",
	} {
		if _, err := readReviewed(strings.NewReader(d)); err == nil {
			t.Errorf("%s: document accepted", name)
		}
	}
	for name, r := range map[string]string{
		"not json":  "Vulnerability #1: GO-2026-6609\n",
		"no config": `{"finding":{"osv":"GO-2026-6608"}}`,
	} {
		if _, err := reachable(strings.NewReader(r)); err == nil {
			t.Errorf("%s: report accepted", name)
		}
	}
}

// TestDownloadChecksTheSum runs download against a stand-in go command
// that answers like go mod download -json, and one that reports an error.
func TestDownloadChecksTheSum(t *testing.T) {
	dir := t.TempDir()
	info := filepath.Join(dir, "m.info")
	if err := os.WriteFile(info, []byte(`{"Version":"v1.0.0","Time":"2026-11-05T23:49:57Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := func(name, answer string, code int) string {
		p := filepath.Join(dir, name)
		script := "#!/bin/sh\ncat <<'EOF'\n" + answer + "\nEOF\nexit " + string(rune('0'+code)) + "\n"
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := fake("good", `{"Path":"m","Version":"v1.0.0","Info":"`+info+`","Dir":"`+dir+`","Sum":"h1:right="}`, 0)
	m, err := download(context.Background(), good, "m", "v1.0.0", "h1:right=")
	if err != nil || m.Dir != dir || m.Time.Year() != 2026 {
		t.Fatalf("download: %+v, %v", m, err)
	}
	if _, err := download(context.Background(), good, "m", "v1.0.0", "h1:pinned="); err == nil || !strings.Contains(err.Error(), "want the pinned h1:pinned=") {
		t.Fatalf("a changed checksum: %v", err)
	}
	bad := fake("bad", `{"Path":"m","Version":"v1.0.0","Error":"not found"}`, 1)
	if _, err := download(context.Background(), bad, "m", "v1.0.0", "h1:right="); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("a failed download: %v", err)
	}
	if _, err := download(context.Background(), filepath.Join(dir, "no-such-go"), "m", "v1.0.0", "h1:right="); err == nil {
		t.Fatal("a missing go command went unnoticed")
	}
}
