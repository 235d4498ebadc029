package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// The statuses a reviewed finding can have in the findings document.
const (
	// statusClosed: fixed in rayo's code; govulncheck must no longer find
	// the vulnerable symbol reachable.
	statusClosed = "closed"
	// statusMitigated: the symbol is still reachable, but rayo keeps the
	// attack input from it (the document says how, and which test shows it).
	statusMitigated = "mitigated"
	// statusNotExposed: reachable by symbol, but the vulnerable behaviour
	// needs a feature or a peer that rayo never uses (the document says which).
	statusNotExposed = "not-exposed"
	// statusAccepted: reachable, exposed only in a narrow case that the
	// document names, and left to the next Go release.
	statusAccepted = "accepted"
)

// reviewRow matches a row of the findings document's table:
// | GO-YYYY-NNNN | status | ... |
var reviewRow = regexp.MustCompile(`^\|\s*(GO-\d{4}-\d{4,})\s*\|\s*([a-z-]+)\s*\|`)

// readReviewed reads the reviewed findings (ID to status) of a document.
func readReviewed(doc io.Reader) (map[string]string, error) {
	reviewed := map[string]string{}
	sc := bufio.NewScanner(doc)
	for line := 1; sc.Scan(); line++ {
		m := reviewRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		switch m[2] {
		case statusClosed, statusMitigated, statusNotExposed, statusAccepted:
		default:
			return nil, fmt.Errorf("line %d: %s has status %q, want %s, %s, %s or %s", line, m[1], m[2], statusClosed, statusMitigated, statusNotExposed, statusAccepted)
		}
		if _, dup := reviewed[m[1]]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", line, m[1])
		}
		reviewed[m[1]] = m[2]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the findings document: %w", err)
	}
	if len(reviewed) == 0 {
		return nil, errors.New("the findings document lists no finding (rows | GO-YYYY-NNNN | status | ... |)")
	}
	return reviewed, nil
}

// finding is the part of govulncheck's JSON finding message that matters.
type finding struct {
	OSV   string `json:"osv"`
	Trace []struct {
		Module   string `json:"module"`
		Package  string `json:"package"`
		Function string `json:"function"`
		Receiver string `json:"receiver"`
	} `json:"trace"`
}

// reachable reads govulncheck's JSON stream (-format json) and returns each
// vulnerability it found reachable by symbol, with one vulnerable symbol.
func reachable(report io.Reader) (map[string]string, error) {
	dec := json.NewDecoder(report)
	found := map[string]string{}
	sawConfig := false
	for {
		var msg struct {
			Config  json.RawMessage `json:"config"`
			Finding *finding        `json:"finding"`
		}
		err := dec.Decode(&msg)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading govulncheck's JSON: %w", err)
		}
		if msg.Config != nil {
			sawConfig = true
		}
		f := msg.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue // not a finding, or one at module or package level only
		}
		sym := f.Trace[0].Function
		if f.Trace[0].Receiver != "" {
			sym = strings.TrimPrefix(f.Trace[0].Receiver, "*") + "." + sym
		}
		if _, ok := found[f.OSV]; !ok {
			found[f.OSV] = f.Trace[0].Package + "." + sym
		}
	}
	if !sawConfig {
		return nil, errors.New("govulncheck's JSON has no config message: not a govulncheck -format json report")
	}
	return found, nil
}

// check compares the reachable findings with the reviewed ones and returns
// a line per finding for the log, and an error listing every discrepancy:
// a reachable finding nobody reviewed, a closed one that is reachable
// again, or a reviewed one that is no longer reachable (the document must
// then say it is closed).
func check(found, reviewed map[string]string) ([]string, error) {
	var lines, problems []string
	for _, id := range sortedKeys(found) {
		switch st, ok := reviewed[id]; {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is reachable (%s) and not reviewed: fix it, or add it to the findings document with how it is mitigated", id, found[id]))
		case st == statusClosed:
			problems = append(problems, fmt.Sprintf("%s is marked closed but is reachable again (%s)", id, found[id]))
		default:
			lines = append(lines, fmt.Sprintf("%s reachable (%s): %s, as reviewed", id, found[id], st))
		}
	}
	for _, id := range sortedKeys(reviewed) {
		_, ok := found[id]
		switch {
		case reviewed[id] == statusClosed && !ok:
			lines = append(lines, fmt.Sprintf("%s not reachable: closed", id))
		case !ok:
			problems = append(problems, fmt.Sprintf("%s is listed as %s but no longer reachable: mark it closed", id, reviewed[id]))
		}
	}
	if len(problems) > 0 {
		return lines, errors.New(strings.Join(problems, "\n"))
	}
	return lines, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
