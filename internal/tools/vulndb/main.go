// Command vulndb builds an offline Go vulnerability database for govulncheck
// from the OSV reports that the golang.org/x/vulndb module ships in
// data/osv. The module comes from the Go module proxy at a pinned version,
// and its checksum is checked against the one pinned here (the go command
// checks it against the checksum database too), so `make vuln` needs neither
// vuln.go.dev nor any other site:
//
//	go run ./internal/tools/vulndb -out DIR
//	go tool govulncheck -db file://DIR ./...
//
// The output is govulncheck's v1 database layout: index/db.json (when the
// database was last modified), index/modules.json (each affected module with
// its reports and their latest fix) and ID/<id>.json (one OSV report each).
//
// With -check, it instead compares a govulncheck report (-format json) with
// the reviewed findings of a document (docs/vulnerabilities.md) and fails on
// any reachable finding not reviewed there, on a finding marked closed that
// is reachable again, and on a reviewed finding that is no longer reachable:
//
//	go tool govulncheck -db file://DIR -format json ./... > report.json
//	go run ./internal/tools/vulndb -check docs/vulnerabilities.md report.json
//
// The module is not a requirement in go.mod: it holds no package that
// rayo could import without pulling in its own tools' dependencies, so
// `go mod tidy` would drop it again. Its version and checksum live here
// instead; bump both together.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The golang.org/x/vulndb version the database is built from, and its
// module checksum (as go.sum would record it).
const (
	vulndbModule  = "golang.org/x/vulndb"
	vulndbVersion = "v0.0.0-20261105234957-e22db6528018"
	vulndbSum     = "h1:mfngRv0Yoh0VApsXKEN82CjD99kl7mtparN3bs3JnqI="
)

func main() {
	out := flag.String("out", "", "folder to write the database into (created; must be empty or absent)")
	src := flag.String("src", "", "a folder of OSV reports to use instead of the pinned module's data/osv")
	goCmd := flag.String("go", "go", "the go command that downloads the pinned module")
	doc := flag.String("check", "", "check the govulncheck JSON report named by the argument against this findings document")
	flag.Parse()
	var err error
	if *doc != "" {
		err = runCheck(*doc, flag.Args())
	} else {
		err = run(*out, *src, *goCmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
}

func run(out, src, goCmd string) error {
	if out == "" {
		return fmt.Errorf("-out is required")
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stamp time.Time
	if src == "" {
		mod, err := download(ctx, goCmd, vulndbModule, vulndbVersion, vulndbSum)
		if err != nil {
			return err
		}
		src = filepath.Join(mod.Dir, "data", "osv")
		stamp = mod.Time
	}
	st, err := Build(src, out, stamp)
	if err != nil {
		return err
	}
	fmt.Printf("vulndb: %d reports on %d modules from %s, last modified %s, in %s\n",
		st.Reports, st.Modules, src, st.Modified.Format(time.RFC3339), out)
	return nil
}

func runCheck(doc string, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("-check wants one argument, the govulncheck JSON report; got %d", len(args))
	}
	d, err := os.Open(doc)
	if err != nil {
		return fmt.Errorf("the findings document: %w", err)
	}
	defer d.Close()
	reviewed, err := readReviewed(d)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	r, err := os.Open(args[0])
	if err != nil {
		return fmt.Errorf("the govulncheck report: %w", err)
	}
	defer r.Close()
	found, err := reachable(r)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	lines, err := check(found, reviewed)
	for _, l := range lines {
		fmt.Println("vulndb:", l)
	}
	if err != nil {
		return fmt.Errorf("findings differ from %s:\n%w", doc, err)
	}
	fmt.Printf("vulndb: %d reachable findings, all reviewed in %s\n", len(found), doc)
	return nil
}
