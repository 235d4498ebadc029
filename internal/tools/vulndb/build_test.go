package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeReport(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	stdReport = `{"id":"GO-2026-0001","modified":"2026-03-01T00:00:00Z","affected":[
		{"package":{"name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.25.9"},{"introduced":"1.26.0-0"},{"fixed":"1.26.9"}]}]}]}`
	modReport = `{"id":"GO-2026-0002","modified":"2026-04-01T00:00:00Z","affected":[
		{"package":{"name":"example.com/m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.0"}]}]},
		{"package":{"name":"example.com/m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"2.0.0"}]}]},
		{"package":{"name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.20.1"}]}]}]}`
)

// TestBuild builds a database from two reports and reads back the layout
// govulncheck's -db file:// wants.
func TestBuild(t *testing.T) {
	src, out := t.TempDir(), filepath.Join(t.TempDir(), "db")
	writeReport(t, src, "GO-2026-0001.json", stdReport)
	writeReport(t, src, "GO-2026-0002.json", modReport)
	writeReport(t, src, "README.md", "not a report")
	stamp := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	st, err := Build(src, out, stamp)
	if err != nil {
		t.Fatal(err)
	}
	if st.Reports != 2 || st.Modules != 2 || !st.Modified.Equal(stamp) {
		t.Fatalf("stats %+v", st)
	}
	for _, id := range []string{"GO-2026-0001", "GO-2026-0002"} {
		got, err := os.ReadFile(filepath.Join(out, "ID", id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(src, id+".json"))
		if string(got) != string(want) {
			t.Errorf("ID/%s.json is not the report as shipped", id)
		}
	}
	var db dbMeta
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if !db.Modified.Equal(stamp) {
		t.Errorf("db.json modified %v, want %v", db.Modified, stamp)
	}
	var mods []moduleEntry
	readJSON(t, filepath.Join(out, "index", "modules.json"), &mods)
	want := []moduleEntry{
		{Path: "example.com/m", Vulns: []vulnEntry{{ID: "GO-2026-0002", Modified: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}}},
		{Path: "stdlib", Vulns: []vulnEntry{
			{ID: "GO-2026-0001", Modified: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Fixed: "1.26.9"},
			{ID: "GO-2026-0002", Modified: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), Fixed: "1.20.1"},
		}},
	}
	if g, w := mustJSON(t, mods), mustJSON(t, want); g != w {
		t.Fatalf("modules.json\n got %s\nwant %s", g, w)
	}

	// A newer report than the stamp sets the database's time.
	out2 := filepath.Join(t.TempDir(), "db")
	if st, err := Build(src, out2, time.Time{}); err != nil || !st.Modified.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

func TestLatestFix(t *testing.T) {
	r := func(typ string, ev ...string) osvRange {
		var rg osvRange
		rg.Type = typ
		for _, e := range ev {
			kind, v, _ := strings.Cut(e, "=")
			var x struct {
				Introduced string `json:"introduced"`
				Fixed      string `json:"fixed"`
			}
			if kind == "i" {
				x.Introduced = v
			} else {
				x.Fixed = v
			}
			rg.Events = append(rg.Events, x)
		}
		return rg
	}
	cases := []struct {
		name   string
		ranges []osvRange
		want   string
	}{
		{"none", nil, ""},
		{"fixed", []osvRange{r("SEMVER", "i=0", "f=1.2.3")}, "1.2.3"},
		{"two branches", []osvRange{r("SEMVER", "i=0", "f=1.25.9", "i=1.26.0-0", "f=1.26.9")}, "1.26.9"},
		{"reintroduced", []osvRange{r("SEMVER", "i=0", "f=1.2.0", "i=1.5.0")}, ""},
		{"never fixed", []osvRange{r("SEMVER", "i=0")}, ""},
		{"open second range", []osvRange{r("SEMVER", "i=0", "f=1.2.0"), r("SEMVER", "i=0")}, ""},
		{"latest of ranges", []osvRange{r("SEMVER", "i=0", "f=1.2.0"), r("SEMVER", "i=1.3.0", "f=1.4.1")}, "1.4.1"},
		{"git only", []osvRange{r("GIT", "i=abc", "f=def")}, ""},
		{"prerelease before release", []osvRange{r("SEMVER", "i=0", "f=1.0.0-rc.1", "f=1.0.0")}, "1.0.0"},
	}
	for _, tc := range cases {
		if got := latestFix(tc.ranges); got != tc.want {
			t.Errorf("%s: latestFix %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestBuildRefusesBadReports checks each malformed input gets a clear
// error naming the file.
func TestBuildRefusesBadReports(t *testing.T) {
	cases := []struct {
		name, file, body, want string
	}{
		{"not json", "GO-2026-0003.json", `{"id":`, "GO-2026-0003.json"},
		{"name mismatch", "GO-2026-0003.json", `{"id":"GO-2026-0004","affected":[{"package":{"name":"m"}}]}`, "must be named <ID>.json"},
		{"no id", "GO-2026-0003.json", `{"affected":[{"package":{"name":"m"}}]}`, "bad id"},
		{"path in id", "x.json", `{"id":"../x","affected":[{"package":{"name":"m"}}]}`, "bad id"},
		{"no module", "GO-2026-0003.json", `{"id":"GO-2026-0003","affected":[{"package":{}}]}`, "names no module"},
		{"affects nothing", "GO-2026-0003.json", `{"id":"GO-2026-0003","affected":[]}`, "affects no module"},
		{"bad version", "GO-2026-0003.json", `{"id":"GO-2026-0003","affected":[{"package":{"name":"m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"one.two"}]}]}]}`, `"one.two" is not semver`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			writeReport(t, src, tc.file, tc.body)
			_, err := Build(src, filepath.Join(t.TempDir(), "db"), time.Time{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("no reports", func(t *testing.T) {
		if _, err := Build(t.TempDir(), filepath.Join(t.TempDir(), "db"), time.Time{}); err == nil || !strings.Contains(err.Error(), "no OSV reports") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("missing source", func(t *testing.T) {
		if _, err := Build(filepath.Join(t.TempDir(), "nope"), filepath.Join(t.TempDir(), "db"), time.Time{}); err == nil || !strings.Contains(err.Error(), "reading the OSV reports") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("output not empty", func(t *testing.T) {
		src, out := t.TempDir(), t.TempDir()
		writeReport(t, src, "GO-2026-0001.json", stdReport)
		writeReport(t, out, "old", "x")
		if _, err := Build(src, out, time.Time{}); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("error %v", err)
		}
	})
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
