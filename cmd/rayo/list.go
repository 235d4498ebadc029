package main

// The state commands (rayo list, summary, get, logs, timeline) are HTTP
// clients of the state API described in docs/state-api.md.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/node"
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

// stateClient talks to one state API server.
type stateClient struct {
	base  string // http://HOST:PORT, no trailing slash
	http  *http.Client
	token string // the cluster token, for requests that need it (rayo job)
}

// addDashboardFlag adds --dashboard-address to cmd and returns where it
// will be stored.
func addDashboardFlag(cmd *cobra.Command) *string {
	addr := new(string)
	cmd.PersistentFlags().StringVar(addr, "dashboard-address", "",
		"the state API at http://HOST:PORT or HOST:PORT (default: RAYO_DASHBOARD_ADDRESS, else the local cluster's, else "+defaultDashboard+")")
	return addr
}

// dashboardURL picks the API's base URL: the flag, else the environment,
// else the local cluster record, else the default.
func dashboardURL(flag string) (string, error) {
	addr := flag
	if addr == "" {
		addr = os.Getenv("RAYO_DASHBOARD_ADDRESS")
	}
	if addr == "" {
		if rec, err := node.ReadCluster(node.StateDir()); err == nil {
			addr = rec.Dashboard
		}
	}
	if addr == "" {
		addr = defaultDashboard
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad dashboard address %q: want http://HOST:PORT or HOST:PORT", addr)
	}
	return strings.TrimRight(addr, "/"), nil
}

func newStateClient(flag string) (*stateClient, error) {
	base, err := dashboardURL(flag)
	if err != nil {
		return nil, err
	}
	return &stateClient{base: base, http: &http.Client{}}, nil
}

// open sends GET path?query and returns the response of a 2xx answer; the
// caller closes its body. Other answers become the server's error.
func (c *stateClient) open(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	return c.send(ctx, http.MethodGet, path, query, nil, "")
}

// send makes a request with body (of type contentType, when set) and
// returns the response of a 2xx answer, as open does. A client with a
// token presents it.
func (c *stateClient) send(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the rayo API at %s (is a cluster running? start one with rayo start --head, or set --dashboard-address): %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			return nil, fmt.Errorf("%s answered %s", u, resp.Status)
		}
		return nil, fmt.Errorf("%s answered %s: %s", u, resp.Status, msg)
	}
	return resp, nil
}

// get fetches path?query whole, within stateTimeout.
func (c *stateClient) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	return c.fetch(ctx, http.MethodGet, path, query, nil, "")
}

// fetch sends a request as send does and returns the whole answer.
func (c *stateClient) fetch(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) ([]byte, error) {
	resp, err := c.send(ctx, method, path, query, body, contentType)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// getJSON fetches path?query and decodes it into v; it returns the raw
// body too, for --json.
func (c *stateClient) getJSON(ctx context.Context, path string, query url.Values, v any) ([]byte, error) {
	body, err := c.get(ctx, path, query)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("decode the answer of %s: %w", path, err)
	}
	return body, nil
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
		if cmd.Flags().Changed("limit") {
			if limit < 0 {
				return fmt.Errorf("bad --limit %d: want a number >= 0", limit)
			}
			q.Set("limit", strconv.Itoa(limit))
		}
		if cmd.Flags().Changed("offset") {
			if offset < 0 {
				return fmt.Errorf("bad --offset %d: want a number >= 0", offset)
			}
			q.Set("offset", strconv.Itoa(offset))
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
		body, err := c.getJSON(cmd.Context(), "/api/v0/"+res, q, &page)
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
		var sum struct {
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
		body, err := c.getJSON(cmd.Context(), "/api/v0/"+res+"/summarize", nil, &sum)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return writePretty(out, body)
		}
		keys := make([]string, 0, len(sum.Summary))
		for k := range sum.Summary {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var headers []string
		var rows [][]string
		var footer string
		if res == "objects" {
			headers = []string{"NODE_ID", "COUNT", "SIZE"}
			for _, k := range keys {
				g := sum.Summary[k]
				rows = append(rows, []string{k, strconv.FormatInt(g.Count, 10), bytesHuman(float64(g.SizeBytes))})
			}
			footer = fmt.Sprintf("%d objects, %s", sum.Total, bytesHuman(float64(sum.TotalSizeBytes)))
		} else {
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
		}
		if err := writeTable(out, headers, rows); err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, footer)
		return err
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return cmd
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
		body, err := c.getJSON(cmd.Context(), "/api/v0/"+res+"s/"+id, nil, &one)
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

func newLogsCmd() *cobra.Command {
	var (
		nodeID, workerID, actorID, taskID string
		pid, tail                         int
		follow, asJSON                    bool
	)
	cmd := &cobra.Command{
		Use:   "logs [--node ID] | (--node ID --pid P | --worker ID | --actor ID | --task ID)",
		Short: "List the cluster's (or a node's) worker logs, or print one: by node and pid, worker, actor or task",
		Args:  cobra.NoArgs,
	}
	addr := addDashboardFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		given := 0
		one := cmd.Flags().Changed("pid") || workerID != "" || actorID != "" || taskID != ""
		if !one {
			// No worker named: list the logs there are.
			if follow || cmd.Flags().Changed("tail") {
				return errors.New("--follow and --tail need one log: give --node ID --pid P, --worker ID, --actor ID or --task ID")
			}
			c, err := newStateClient(*addr)
			if err != nil {
				return err
			}
			return listLogs(cmd, c, nodeID, asJSON)
		}
		if nodeID != "" || cmd.Flags().Changed("pid") {
			if nodeID == "" || !cmd.Flags().Changed("pid") || pid <= 0 {
				return errors.New("--node ID and --pid P go together (P > 0)")
			}
			q.Set("node_id", nodeID)
			q.Set("pid", strconv.Itoa(pid))
			given++
		}
		for _, o := range []struct{ key, v string }{{"worker_id", workerID}, {"actor_id", actorID}, {"task_id", taskID}} {
			if o.v != "" {
				q.Set(o.key, o.v)
				given++
			}
		}
		if given != 1 {
			return errors.New("give exactly one of --node ID --pid P, --worker ID, --actor ID and --task ID")
		}
		if cmd.Flags().Changed("tail") {
			if tail < 0 {
				return fmt.Errorf("bad --tail %d: want a number >= 0", tail)
			}
			q.Set("lines", strconv.Itoa(tail))
		}
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		if !follow {
			body, err := c.get(ctx, "/api/v0/logs", q)
			if err != nil {
				return err
			}
			if asJSON {
				lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
				if len(body) == 0 {
					lines = []string{}
				}
				b, _ := json.Marshal(map[string]any{"lines": lines})
				return writePretty(cmd.OutOrStdout(), b)
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		}
		if asJSON {
			return errors.New("--json and --follow do not go together: a followed log is printed as it comes")
		}
		q.Set("follow", "1")
		// Followed until Ctrl-C or the context's end: not an error.
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		resp, err := c.open(ctx, "/api/v0/logs", q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(cmd.OutOrStdout(), resp.Body); err != nil && ctx.Err() == nil {
			return fmt.Errorf("read the log: %w", err)
		}
		return nil
	}
	f := cmd.Flags()
	f.StringVar(&nodeID, "node", "", "the worker's node ID (with --pid)")
	f.IntVar(&pid, "pid", 0, "the worker's process ID (with --node)")
	f.StringVar(&workerID, "worker", "", "the worker's ID")
	f.StringVar(&actorID, "actor", "", "the worker of this actor")
	f.StringVar(&taskID, "task", "", "the part of its worker's log this task wrote")
	f.IntVar(&tail, "tail", 0, "only the last N lines (default: all)")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing what the worker writes, until Ctrl-C")
	f.BoolVar(&asJSON, "json", false, "print JSON: the list of logs, or a log's lines")
	return cmd
}

// logColumns are the columns of `rayo logs` listing the logs there are.
var logColumns = []column{
	field("NODE", "node_id"), field("PID", "pid"), field("TYPE", "worker_type"), field("STATE", "state"),
	field("ACTOR_ID", "actor_id"), field("LOG_FILE", "log_file"),
}

// listLogs prints the worker logs of one node (every node when nodeID is
// empty): one per worker process, live or ended, that the API knows.
func listLogs(cmd *cobra.Command, c *stateClient, nodeID string, asJSON bool) error {
	ctx := cmd.Context()
	// Workers only: the raylet keeps no log of a driver (its output is
	// its own terminal's).
	q := url.Values{"limit": {"10000"}, "filter": {"worker_type=WORKER"}}
	if nodeID != "" {
		// An unknown node is an error, not an empty list.
		if _, err := c.get(ctx, "/api/v0/nodes/"+url.PathEscape(nodeID), nil); err != nil {
			return err
		}
		q.Add("filter", "node_id="+nodeID)
	}
	var page struct {
		Warnings []string `json:"warnings"`
		Result   []record `json:"result"`
	}
	body, err := c.getJSON(ctx, "/api/v0/workers", q, &page)
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
	if err := writeRecords(out, logColumns, page.Result); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%d logs; print one with: rayo logs --node ID --pid P\n", len(page.Result))
	return err
}

func newTimelineCmd() *cobra.Command {
	var jobID, file string
	cmd := &cobra.Command{
		Use:   "timeline",
		Short: "Save the tasks' execution as Chrome trace events, for Perfetto or chrome://tracing",
		Args:  cobra.NoArgs,
	}
	addr := addDashboardFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q := url.Values{}
		if jobID != "" {
			q.Set("job_id", jobID)
		}
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		body, err := c.get(cmd.Context(), "/api/v0/timeline", q)
		if err != nil {
			return err
		}
		var events []json.RawMessage
		if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
			return fmt.Errorf("the server's timeline is not a JSON array of events: %.100q", body)
		}
		if err := json.Unmarshal(body, &events); err != nil {
			return fmt.Errorf("the server's timeline is not a JSON array of events: %w", err)
		}
		if file == "" {
			file = "timeline-" + time.Now().Format("20060102-150405") + ".json"
		}
		if err := os.WriteFile(file, body, 0o644); err != nil {
			return fmt.Errorf("write the timeline: %w", err)
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %d events to %s; open it in https://ui.perfetto.dev or chrome://tracing\n", len(events), file)
		return err
	}
	f := cmd.Flags()
	f.StringVar(&jobID, "job", "", "only this job's tasks")
	f.StringVarP(&file, "output", "o", "", "the file to write (default: timeline-YYYYmmdd-HHMMSS.json here)")
	return cmd
}
