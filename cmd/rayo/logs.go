package main

// rayo logs and rayo timeline: a worker's log, and the tasks' execution as
// Chrome trace events, from the API server.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/stateapi"
)

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
		if err := setCount(cmd, q, "tail", "lines", tail); err != nil {
			return err
		}
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		if !follow {
			return printLog(cmd, c, q, asJSON)
		}
		if asJSON {
			return errors.New("--json and --follow do not go together: a followed log is printed as it comes")
		}
		return followLog(cmd, c, q)
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

// printLog prints the log that q names, as it is now: as it is, or as
// JSON lines.
func printLog(cmd *cobra.Command, c *stateapi.Client, q url.Values, asJSON bool) error {
	body, err := get(cmd.Context(), c, "/api/v0/logs", q)
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

// followLog prints the log that q names as the worker writes it, until
// Ctrl-C or the context's end, which are not errors.
func followLog(cmd *cobra.Command, c *stateapi.Client, q url.Values) error {
	q.Set("follow", "1")
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	resp, err := c.Open(ctx, "/api/v0/logs", q)
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

// logColumns are the columns of `rayo logs` listing the logs there are.
var logColumns = []column{
	field("NODE", "node_id"), field("PID", "pid"), field("TYPE", "worker_type"), field("STATE", "state"),
	field("ACTOR_ID", "actor_id"), field("LOG_FILE", "log_file"),
}

// listLogs prints the worker logs of one node (every node when nodeID is
// empty): one per worker process, live or ended, that the API knows.
func listLogs(cmd *cobra.Command, c *stateapi.Client, nodeID string, asJSON bool) error {
	ctx := cmd.Context()
	// Workers only: the raylet keeps no log of a driver (its output is
	// its own terminal's).
	q := url.Values{"limit": {"10000"}, "filter": {"worker_type=WORKER"}}
	if nodeID != "" {
		// An unknown node is an error, not an empty list.
		if _, err := get(ctx, c, "/api/v0/nodes/"+url.PathEscape(nodeID), nil); err != nil {
			return err
		}
		q.Add("filter", "node_id="+nodeID)
	}
	var page struct {
		Warnings []string `json:"warnings"`
		Result   []record `json:"result"`
	}
	body, err := getJSON(ctx, c, "/api/v0/workers", q, &page)
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
		c, err := newStateClient(*addr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), stateTimeout)
		defer cancel()
		var buf bytes.Buffer
		if err := c.Timeline(ctx, &buf, jobID); err != nil {
			return err
		}
		body := buf.Bytes()
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
