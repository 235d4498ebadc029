package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// report is the part of an OSV report that the index needs.
type report struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced"`
		Fixed      string `json:"fixed"`
	} `json:"events"`
}

// dbMeta is index/db.json.
type dbMeta struct {
	Modified time.Time `json:"modified"`
}

// moduleEntry is one element of index/modules.json.
type moduleEntry struct {
	Path  string      `json:"path"`
	Vulns []vulnEntry `json:"vulns"`
}

type vulnEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	// Fixed is the version from which no version is affected any more
	// (no "v"), or empty when there is none: govulncheck fetches a report
	// only for module versions below it.
	Fixed string `json:"fixed,omitempty"`
}

// Stats says what Build wrote.
type Stats struct {
	Reports  int
	Modules  int
	Modified time.Time
}

// Build reads the OSV reports (<ID>.json) in src and writes the database
// into out, which must be absent or empty. The database's modification time
// is the latest of the reports' and stamp. Every report is checked: a file
// that is not a well-formed report named after its ID stops the build.
func Build(src, out string, stamp time.Time) (Stats, error) {
	files, err := os.ReadDir(src)
	if err != nil {
		return Stats{}, fmt.Errorf("reading the OSV reports: %w", err)
	}
	if err := emptyDir(out); err != nil {
		return Stats{}, err
	}
	for _, d := range []string{"ID", "index"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return Stats{}, fmt.Errorf("creating the database: %w", err)
		}
	}
	modules := map[string]*moduleEntry{}
	st := Stats{Modified: stamp.UTC()}
	for _, f := range files {
		if f.IsDir() || filepath.Ext(f.Name()) != ".json" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, f.Name()))
		if err != nil {
			return Stats{}, fmt.Errorf("reading a report: %w", err)
		}
		r, err := parseReport(f.Name(), raw)
		if err != nil {
			return Stats{}, err
		}
		if err := os.WriteFile(filepath.Join(out, "ID", f.Name()), raw, 0o644); err != nil {
			return Stats{}, fmt.Errorf("writing %s: %w", r.ID, err)
		}
		st.Reports++
		if r.Modified.After(st.Modified) {
			st.Modified = r.Modified.UTC()
		}
		// A report may name a module more than once (one entry per
		// package): the index lists it once, fixed where every entry is.
		var order []string
		fixes := map[string]string{}
		for _, a := range r.Affected {
			fix := latestFix(a.Ranges)
			prev, seen := fixes[a.Package.Name]
			switch {
			case !seen:
				order = append(order, a.Package.Name)
			case prev == "" || fix == "":
				fix = ""
			case less(fix, prev):
				fix = prev
			}
			fixes[a.Package.Name] = fix
		}
		for _, path := range order {
			m := modules[path]
			if m == nil {
				m = &moduleEntry{Path: path}
				modules[path] = m
			}
			m.Vulns = append(m.Vulns, vulnEntry{ID: r.ID, Modified: r.Modified, Fixed: fixes[path]})
		}
	}
	if st.Reports == 0 {
		return Stats{}, fmt.Errorf("no OSV reports (<ID>.json) in %s", src)
	}
	index := make([]*moduleEntry, 0, len(modules))
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		index = append(index, m)
	}
	sort.Slice(index, func(i, j int) bool { return index[i].Path < index[j].Path })
	st.Modules = len(index)
	if err := writeJSON(filepath.Join(out, "index", "modules.json"), index); err != nil {
		return Stats{}, err
	}
	if err := writeJSON(filepath.Join(out, "index", "db.json"), dbMeta{Modified: st.Modified}); err != nil {
		return Stats{}, err
	}
	return st, nil
}

// parseReport checks one report: well-formed JSON, named <ID>.json, every
// affected module named, and every version valid semver (introduced may be
// "0", the start of time).
func parseReport(name string, raw []byte) (*report, error) {
	var r report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("report %s: %w", name, err)
	}
	if r.ID == "" || strings.ContainsAny(r.ID, `/\`) || strings.HasPrefix(r.ID, ".") {
		return nil, fmt.Errorf("report %s: bad id %q", name, r.ID)
	}
	if name != r.ID+".json" {
		return nil, fmt.Errorf("report %s holds id %s: a report's file must be named <ID>.json", name, r.ID)
	}
	if len(r.Affected) == 0 {
		return nil, fmt.Errorf("report %s affects no module", name)
	}
	for _, a := range r.Affected {
		if a.Package.Name == "" {
			return nil, fmt.Errorf("report %s: an affected entry names no module", name)
		}
		for _, rg := range a.Ranges {
			if rg.Type != "SEMVER" {
				continue
			}
			for _, e := range rg.Events {
				if e.Introduced != "" && e.Introduced != "0" && !semver.IsValid("v"+e.Introduced) {
					return nil, fmt.Errorf("report %s: introduced version %q is not semver", name, e.Introduced)
				}
				if e.Fixed != "" && !semver.IsValid("v"+e.Fixed) {
					return nil, fmt.Errorf("report %s: fixed version %q is not semver", name, e.Fixed)
				}
			}
		}
	}
	return &r, nil
}

// latestFix is the version at and above which none of ranges applies, or ""
// when some range stays open (introduced at or after its last fix, or never
// fixed) or none is SEMVER (govulncheck then takes every version as
// affected). An empty answer is always safe: it only makes govulncheck read
// the report and check the version itself.
func latestFix(ranges []osvRange) string {
	var fix string
	for _, rg := range ranges {
		if rg.Type != "SEMVER" {
			continue
		}
		var lastFix, lastIntro string
		for _, e := range rg.Events {
			if e.Fixed != "" && (lastFix == "" || less(lastFix, e.Fixed)) {
				lastFix = e.Fixed
			}
			if e.Introduced != "" && (lastIntro == "" || less(lastIntro, e.Introduced)) {
				lastIntro = e.Introduced
			}
		}
		if lastFix == "" || lastIntro != "" && !less(lastIntro, lastFix) {
			return ""
		}
		if fix == "" || less(fix, lastFix) {
			fix = lastFix
		}
	}
	return fix
}

// less orders OSV versions (no "v"); "0" comes before every other.
func less(a, b string) bool {
	if a == "0" || b == "0" {
		return a == "0" && b != "0"
	}
	return semver.Compare("v"+a, "v"+b) < 0
}

// emptyDir makes sure dir exists and holds nothing.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the database: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("the database's folder: %w", err)
	case len(ents) > 0:
		return fmt.Errorf("the database's folder %s is not empty", dir)
	}
	return nil
}

func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(name), err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	return nil
}
