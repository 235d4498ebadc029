package main

// The state commands (rayo list, summary, get here; logs and timeline in
// logs.go) are clients of the state API described in docs/state-api.md,
// through internal/stateapi.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

const (
	// defaultDashboard is where the state API answers when nothing says
	// otherwise.
	defaultDashboard = "http://127.0.0.1:8265"
	// stateTimeout bounds every request but a followed log.
	stateTimeout = 30 * time.Second
)

// listResources are the resources `rayo list` knows, in the order help
// lists them.
var listResources = []string{"nodes", "workers", "jobs", "tasks", "actors", "objects", "placement_groups"}

// resourceArgs checks that the arguments are a resource among choices
// followed by extra more (an ID), before any request.
func resourceArgs(choices []string, extra string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		want := 1
		usage := "RESOURCE"
		if extra != "" {
			want, usage = 2, "RESOURCE "+extra
		}
		if len(args) == 0 {
			return fmt.Errorf("give %s, RESOURCE one of %s", usage, strings.Join(choices, ", "))
		}
		if !slices.Contains(choices, args[0]) {
			return fmt.Errorf("unknown resource %q: want one of %s", args[0], strings.Join(choices, ", "))
		}
		if len(args) != want {
			return fmt.Errorf("give %s (got %d arguments)", usage, len(args))
		}
		return nil
	}
}

// newStateCmds returns rayo list, summary, get, logs and timeline.
func newStateCmds() []*cobra.Command {
	cmds := []*cobra.Command{newListCmd(), newSummaryCmd(), newGetCmd(), newLogsCmd(), newTimelineCmd()}
	for _, c := range cmds {
		// Errors print as "rayo: <error>", as main prints its own.
		c.SetErrPrefix("rayo:")
	}
	return cmds
}

// writePretty writes a JSON document indented.
func writePretty(w io.Writer, body []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		return fmt.Errorf("the server's JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// record is one decoded record of the API, numbers kept as json.Number.
type record map[string]any

// str formats field key of r for a table cell.
func (r record) str(key string) string {
	return cell(r[key])
}

func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = cell(x)
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func (r record) num(key string) float64 {
	if n, ok := r[key].(json.Number); ok {
		f, _ := n.Float64()
		return f
	}
	return 0
}

// bytesHuman formats a size in bytes as 1.5MiB.
func bytesHuman(b float64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%.0fB", b)
	}
	exp, div := 0, float64(unit)
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", b/div, "KMGTPE"[exp])
}

// msTime formats Unix milliseconds as local time; 0 is "-".
func msTime(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(int64(ms)).Format("2006-01-02 15:04:05")
}

// column is one column of a list table.
type column struct {
	header string
	value  func(record) string
}

func field(header, key string) column {
	return column{header, func(r record) string { return r.str(key) }}
}

// listColumns are the columns `rayo list` shows per resource.
var listColumns = map[string][]column{
	"tasks": {
		field("TASK_ID", "task_id"), field("ATTEMPT", "attempt_number"), field("NAME", "name"),
		field("STATE", "state"), field("NODE", "node_id"), field("WORKER_PID", "worker_pid"), field("ERROR_TYPE", "error_type"),
	},
	"actors": {
		field("ACTOR_ID", "actor_id"), field("CLASS", "class_name"), field("NAME", "name"),
		field("STATE", "state"), field("NODE", "node_id"), field("PID", "pid"), field("RESTARTS", "num_restarts"),
		column{"DEATH_CAUSE", func(r record) string {
			if c := r.str("death_cause"); c != "" {
				return c
			}
			return "-"
		}},
	},
	"nodes": {
		field("NODE_ID", "node_id"), field("ADDRESS", "address"), field("STATE", "state"),
		column{"CPU", func(r record) string { return fmt.Sprintf("%.1f%%", r.num("cpu_percent")) }},
		column{"MEM", func(r record) string {
			return bytesHuman(r.num("mem_used_bytes")) + "/" + bytesHuman(r.num("mem_total_bytes"))
		}},
		column{"STORE", func(r record) string {
			return bytesHuman(r.num("object_store_used_bytes")) + "/" + bytesHuman(r.num("object_store_capacity_bytes"))
		}},
		column{"SPILLED", func(r record) string { return bytesHuman(r.num("object_store_spilled_bytes")) }},
	},
	"workers": {
		field("WORKER_ID", "worker_id"), field("NODE", "node_id"), field("PID", "pid"),
		field("TYPE", "worker_type"), field("STATE", "state"),
	},
	"jobs": {
		field("JOB_ID", "job_id"), field("STATUS", "status"),
		column{"SUBMISSION", func(r record) string {
			if id := r.str("submission_id"); id != "" {
				return id
			}
			return "-"
		}},
		column{"START", func(r record) string { return msTime(r.num("start_time_ms")) }},
		field("ENTRYPOINT", "entrypoint"),
	},
	"objects": {
		field("OBJECT_ID", "object_id"),
		column{"SIZE", func(r record) string { return bytesHuman(r.num("object_size_bytes")) }},
		field("LOCATIONS", "locations"), field("WHERE", "location"), field("OWNER", "owner_address"), field("REFS", "reference_count"),
	},
	"placement_groups": {
		field("PLACEMENT_GROUP_ID", "placement_group_id"), field("NAME", "name"),
		field("STATE", "state"), field("STRATEGY", "strategy"),
		column{"BUNDLES", bundleNodes},
	},
}

// bundleNodes is a placement group's bundles and their nodes, as
// "2: abc,def" ("-" for a bundle not placed).
func bundleNodes(r record) string {
	list, _ := r["bundles"].([]any)
	nodes := make([]string, len(list))
	for i, b := range list {
		m, _ := b.(map[string]any)
		n, _ := m["node_id"].(string)
		if n == "" {
			n = "-"
		}
		nodes[i] = n
	}
	return fmt.Sprintf("%d: %s", len(list), strings.Join(nodes, ","))
}

// writeRecords writes records as a table of cols.
func writeRecords(w io.Writer, cols []column, records []record) error {
	headers := make([]string, len(cols))
	for i, col := range cols {
		headers[i] = col.header
	}
	rows := make([][]string, len(records))
	for i, r := range records {
		rows[i] = make([]string, len(cols))
		for j, col := range cols {
			rows[i][j] = col.value(r)
		}
	}
	return writeTable(w, headers, rows)
}

// writeTable writes rows under headers, aligned.
func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// checkFilter rejects a --filter that is not KEY=VALUE or KEY!=VALUE.
func checkFilter(f string) error {
	i := strings.IndexByte(f, '=')
	if i < 0 {
		return fmt.Errorf("bad --filter %q: want KEY=VALUE or KEY!=VALUE", f)
	}
	key := strings.TrimSuffix(f[:i], "!")
	if strings.TrimSpace(key) == "" {
		return fmt.Errorf("bad --filter %q: the key is empty (want KEY=VALUE or KEY!=VALUE)", f)
	}
	return nil
}

func newListCmd() *cobra.Command {
	var (
		filters       []string
		limit, offset int
		asJSON        bool
	)
	cmd := &cobra.Command{
		Use:       "list " + strings.Join(listResources, "|"),
		Short:     "List the cluster's nodes, workers, jobs, tasks, actors, objects or placement groups",
		ValidArgs: listResources,
		Args:      resourceArgs(listResources, ""),
	}
	addr := addDashboardFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		res := args[0]
		q := url.Values{}
		for _, f := range filters {
			if err := checkFilter(f); err != nil {
				return err
			}
			q.Add("filter", f)
		}
		if err := setCount(cmd, q, "limit", "limit", limit); err != nil {
			return err
		}
		if err := setCount(cmd, q, "offset", "offset", offset); err != nil {
			return err
		}
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		var page struct {
			Total       int      `json:"total"`
			NumFiltered int      `json:"num_filtered"`
			Offset      int      `json:"offset"`
			Dropped     int      `json:"dropped"`
			Warnings    []string `json:"warnings"`
			Result      []record `json:"result"`
		}
		body, err := getJSON(cmd.Context(), c, "/api/v0/"+res, q, &page)
		if err != nil {
			return err
		}
		for _, w := range page.Warnings {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return writePretty(out, body)
		}
		if err := writeRecords(out, listColumns[res], page.Result); err != nil {
			return err
		}
		footer := fmt.Sprintf("showing %d of %d", len(page.Result), page.NumFiltered)
		if page.Offset > 0 {
			footer += fmt.Sprintf(" from offset %d", page.Offset)
		}
		footer += fmt.Sprintf(" (%d held", page.Total)
		if page.Dropped > 0 {
			footer += fmt.Sprintf("; %d dropped", page.Dropped)
		}
		_, err = fmt.Fprintln(out, footer+")")
		return err
	}
	f := cmd.Flags()
	f.StringArrayVar(&filters, "filter", nil, "keep records whose field KEY equals (KEY=VALUE) or differs from (KEY!=VALUE) VALUE; repeat for AND")
	f.IntVar(&limit, "limit", 100, "at most this many records")
	f.IntVar(&offset, "offset", 0, "skip this many records first")
	f.BoolVar(&asJSON, "json", false, "print the server's JSON")
	return cmd
}

// summaryResources are the resources `rayo summary` knows.
var summaryResources = []string{"tasks", "actors", "objects"}

// stateOrder is the order in which state columns appear; unknown states
// follow, sorted.
var stateOrder = []string{
	"PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "DEPENDENCIES_UNREADY",
	"PENDING_CREATION", "RUNNING", "ALIVE", "RESTARTING", "FINISHED", "FAILED", "DEAD",
}

// stateColumns returns the states counted in groups, in stateOrder.
func stateColumns(counts []map[string]int) []string {
	seen := map[string]bool{}
	for _, c := range counts {
		for s := range c {
			seen[s] = true
		}
	}
	var cols, rest []string
	for _, s := range stateOrder {
		if seen[s] {
			cols = append(cols, s)
			delete(seen, s)
		}
	}
	for s := range seen {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	return append(cols, rest...)
}

// summaryAnswer is the API's answer to /api/v0/RESOURCE/summarize.
type summaryAnswer struct {
	Total          int64 `json:"total"`
	Dropped        int64 `json:"dropped"`
	TotalSizeBytes int64 `json:"total_size_bytes"`
	Summary        map[string]struct {
		Name        string         `json:"name"`
		ClassName   string         `json:"class_name"`
		Type        string         `json:"type"`
		StateCounts map[string]int `json:"state_counts"`
		Count       int64          `json:"count"`
		SizeBytes   int64          `json:"size_bytes"`
	} `json:"summary"`
}

// setCount puts the value n of the count flag, when given, in q as key,
// refusing a negative one.
func setCount(cmd *cobra.Command, q url.Values, flag, key string, n int) error {
	if !cmd.Flags().Changed(flag) {
		return nil
	}
	if n < 0 {
		return fmt.Errorf("bad --%s %d: want a number >= 0", flag, n)
	}
	q.Set(key, strconv.Itoa(n))
	return nil
}

func newSummaryCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:       "summary " + strings.Join(summaryResources, "|"),
		Short:     "Count the cluster's tasks (by name), actors (by class) or objects (by node) per state",
		ValidArgs: summaryResources,
		Args:      resourceArgs(summaryResources, ""),
	}
	addr := addDashboardFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		res := args[0]
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		var sum summaryAnswer
		body, err := getJSON(cmd.Context(), c, "/api/v0/"+res+"/summarize", nil, &sum)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return writePretty(out, body)
		}
		headers, rows, footer := summaryTable(res, sum)
		if err := writeTable(out, headers, rows); err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, footer)
		return err
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return cmd
}

// summaryTable lays out a summary of res: objects by node, or tasks and
// actors by name with a column per state.
func summaryTable(res string, sum summaryAnswer) (headers []string, rows [][]string, footer string) {
	keys := make([]string, 0, len(sum.Summary))
	for k := range sum.Summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if res == "objects" {
		headers = []string{"NODE_ID", "COUNT", "SIZE"}
		for _, k := range keys {
			g := sum.Summary[k]
			rows = append(rows, []string{k, strconv.FormatInt(g.Count, 10), bytesHuman(float64(g.SizeBytes))})
		}
		return headers, rows, fmt.Sprintf("%d objects, %s", sum.Total, bytesHuman(float64(sum.TotalSizeBytes)))
	}
	var counts []map[string]int
	for _, k := range keys {
		counts = append(counts, sum.Summary[k].StateCounts)
	}
	states := stateColumns(counts)
	if res == "tasks" {
		headers = []string{"NAME", "TYPE"}
	} else {
		headers = []string{"CLASS"}
	}
	headers = append(headers, states...)
	for _, k := range keys {
		g := sum.Summary[k]
		row := []string{k}
		if res == "tasks" {
			row = append(row, g.Type)
		}
		for _, s := range states {
			row = append(row, strconv.Itoa(g.StateCounts[s]))
		}
		rows = append(rows, row)
	}
	footer = fmt.Sprintf("%d %s", sum.Total, res)
	if sum.Dropped > 0 {
		footer += fmt.Sprintf(" (%d dropped)", sum.Dropped)
	}
	return headers, rows, footer
}

// getResources are the resources `rayo get` knows.
var getResources = []string{"task", "actor", "node", "job"}

func newGetCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:       "get " + strings.Join(getResources, "|") + " ID",
		Short:     "Show one task (every attempt), actor, node or job in full",
		ValidArgs: getResources,
		Args:      resourceArgs(getResources, "ID"),
	}
	addr := addDashboardFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		res, id := args[0], args[1]
		if id == "" || strings.ContainsAny(id, "/?#") {
			return fmt.Errorf("bad %s ID %q", res, id)
		}
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		var one struct {
			Result []json.RawMessage `json:"result"`
		}
		body, err := getJSON(cmd.Context(), c, "/api/v0/"+res+"s/"+id, nil, &one)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return writePretty(out, body)
		}
		if len(one.Result) == 0 {
			return fmt.Errorf("no %s %s", res, id)
		}
		for i, raw := range one.Result {
			if i > 0 {
				fmt.Fprintln(out)
			}
			if err := writeRecord(out, raw); err != nil {
				return err
			}
		}
		return nil
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return cmd
}

// writeRecord prints a JSON object as "key: value" lines, in the server's
// order. A string of several lines (an error and its stack) follows its
// key, indented, in full.
func writeRecord(w io.Writer, raw json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("the server sent a record that is not a JSON object: %s", raw)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("decode record: %w", err)
		}
		key, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("decode record field %s: %w", key, err)
		}
		s := cell(v)
		if strings.Contains(s, "\n") {
			fmt.Fprintf(w, "%s:\n", key)
			for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
				if line == "" {
					fmt.Fprintln(w)
					continue
				}
				fmt.Fprintf(w, "    %s\n", line)
			}
			continue
		}
		if _, err := fmt.Fprintf(w, "%s: %s\n", key, s); err != nil {
			return err
		}
	}
	return nil
}
