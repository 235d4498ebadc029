package main

// rayo job: submit programs to a cluster's head and follow them (Ray's
// ray job), as a client of the API server's /api/jobs/.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/stateapi"
)

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit programs to the cluster's head and follow them: submit, status, logs, stop, list, delete",
	}
	addr := addDashboardFlag(cmd)
	alias := new(string)
	cmd.PersistentFlags().StringVar(alias, "address", "", "the same as --dashboard-address, as ray job names it")
	token := new(string)
	cmd.PersistentFlags().StringVar(token, "token", "", "the cluster token, which submit, stop and delete need (default: RAYO_TOKEN, else this machine's cluster record)")
	tokenFile := new(string)
	cmd.PersistentFlags().StringVar(tokenFile, "token-file", "", "read the cluster token from this file (default: RAYO_TOKEN_FILE)")
	client := func() (*stateapi.Client, error) {
		if *tokenFile == "" && *token == "" {
			*tokenFile = os.Getenv("RAYO_TOKEN_FILE")
		}
		t, err := tokenFrom(*token, *tokenFile)
		if err != nil {
			return nil, err
		}
		*token = t
		if *addr == "" {
			*addr = *alias
		}
		c, err := newStateClient(*addr)
		if err != nil {
			return nil, err
		}
		if *token != "" {
			c.Token = *token
		}
		return c, nil
	}
	cmd.AddCommand(newJobSubmitCmd(client), newJobStatusCmd(client), newJobLogsCmd(client),
		newJobStopCmd(client), newJobListCmd(client), newJobDeleteCmd(client))
	for _, c := range cmd.Commands() {
		c.SetErrPrefix("rayo:")
	}
	cmd.SetErrPrefix("rayo:")
	return cmd
}

type clientFunc func() (*stateapi.Client, error)

// keyValues turns KEY=VALUE flags into a map.
func keyValues(flag string, list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(list))
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("bad --%s %q: want KEY=VALUE", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}

func newJobSubmitCmd(client clientFunc) *cobra.Command {
	var (
		id, workDir    string
		env, meta      []string
		noWait, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "submit [flags] -- ENTRYPOINT...",
		Short: "Run a program on the cluster's head as a driver of the cluster, and follow its output until it ends",
		Long: "Run ENTRYPOINT (a shell command) on the cluster's head, with RAYO_ADDRESS set so that its rayo.Init\n" +
			"joins the cluster. --working-dir uploads a local folder (a built program, its data) to run it in.\n" +
			"Without --no-wait, its output follows until it ends, and the exit code says how it ended.",
		Args: cobra.MinimumNArgs(1),
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		envs, err := keyValues("env", env)
		if err != nil {
			return err
		}
		metadata, err := keyValues("metadata", meta)
		if err != nil {
			return err
		}
		req := map[string]any{"entrypoint": strings.Join(args, " "), "submission_id": id, "env": envs, "metadata": metadata}
		c, err := client()
		if err != nil {
			return err
		}
		body, contentType, err := submitBody(req, workDir)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		raw, err := c.Fetch(ctx, http.MethodPost, "/api/jobs/", nil, body, contentType)
		if err != nil {
			return err
		}
		var answer struct {
			SubmissionID string    `json:"submission_id"`
			Job          jobs.Info `json:"job"`
		}
		if err := jsonUnmarshal(raw, &answer); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if asJSON {
			if err := writePretty(out, raw); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "rayo: submitted %s\n", answer.SubmissionID)
		}
		if noWait || jobs.Final(answer.Job.Status) {
			return jobOutcome(answer.Job)
		}
		return followSubmission(cmd, c, answer.SubmissionID, asJSON)
	}
	f := cmd.Flags()
	f.StringVar(&id, "submission-id", "", "the submission's ID (default: made up)")
	f.StringVar(&workDir, "working-dir", "", "a local folder to upload and run the entrypoint in (default: an empty one)")
	f.StringArrayVar(&env, "env", nil, "KEY=VALUE for the entrypoint's environment; repeat for more")
	f.StringArrayVar(&meta, "metadata", nil, "KEY=VALUE kept with the submission; repeat for more")
	f.BoolVar(&noWait, "no-wait", false, "return once it started, without following it")
	f.BoolVar(&asJSON, "json", false, "print the server's JSON answer (the output, if followed, goes to stderr)")
	return cmd
}

// followSubmission prints a submission's output until it ends (to stderr
// with --json), and returns how it ended; Ctrl-C leaves it running.
func followSubmission(cmd *cobra.Command, c *stateapi.Client, id string, asJSON bool) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logOut := cmd.OutOrStdout()
	if asJSON {
		logOut = cmd.ErrOrStderr()
	}
	if err := followJobLog(ctx, c, id, logOut); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "rayo: %s goes on; rayo job logs %s -f follows it, rayo job stop %s stops it\n", id, id, id)
			return nil
		}
		return err
	}
	final, err := getSubmission(ctx, c, id)
	if err != nil {
		return err
	}
	if final.Status == jobs.StatusSucceeded {
		fmt.Fprintf(cmd.ErrOrStderr(), "rayo: %s succeeded\n", final.SubmissionID)
	}
	return jobOutcome(final)
}

// submitBody is the request: JSON alone, or multipart with the working
// directory packed, streamed as it is packed.
func submitBody(req map[string]any, workDir string) (io.Reader, string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, "", err
	}
	if workDir == "" {
		return bytes.NewReader(b), "application/json", nil
	}
	if fi, err := os.Stat(workDir); err != nil || !fi.IsDir() {
		return nil, "", fmt.Errorf("--working-dir %s is not a folder", workDir)
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormField("request")
		if err == nil {
			_, err = part.Write(b)
		}
		if err == nil {
			part, err = mw.CreateFormFile("working_dir", "working_dir.tar.gz")
		}
		if err == nil {
			err = jobs.Pack(part, workDir, jobs.MaxWorkingDir)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, mw.FormDataContentType(), nil
}

func jsonUnmarshal(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode the server's answer: %w", err)
	}
	return nil
}

func getSubmission(ctx context.Context, c *stateapi.Client, id string) (jobs.Info, error) {
	var s jobs.Info
	raw, err := get(ctx, c, "/api/jobs/"+url.PathEscape(id), nil)
	if err != nil {
		return s, err
	}
	return s, jsonUnmarshal(raw, &s)
}

// followJobLog copies a submission's output until it ends.
func followJobLog(ctx context.Context, c *stateapi.Client, id string, w io.Writer) error {
	resp, err := c.Open(ctx, "/api/jobs/"+url.PathEscape(id)+"/logs", url.Values{"follow": {"1"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read the output of %s: %w", id, err)
	}
	return ctx.Err()
}

// describeEnd says how a submission ended: "failed: the entrypoint
// exited with code 4", "stopped on request".
func describeEnd(s jobs.Info) string {
	status := strings.ToLower(s.Status)
	switch {
	case s.Message == "" || s.Status == jobs.StatusSucceeded:
		return status
	case strings.HasPrefix(s.Message, status):
		return s.Message
	}
	return status + ": " + s.Message
}

// errJobDidNotSucceed makes rayo exit non-zero; the status was printed.
var errJobDidNotSucceed = errors.New("the job did not succeed")

// jobOutcome is the command's error for a submission: why it did not
// succeed when it failed or was stopped, else (succeeded, or still
// running) nil.
func jobOutcome(s jobs.Info) error {
	if s.Status == jobs.StatusFailed || s.Status == jobs.StatusStopped {
		return fmt.Errorf("%w: %s %s", errJobDidNotSucceed, s.SubmissionID, describeEnd(s))
	}
	return nil
}

func newJobStatusCmd(client clientFunc) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a submission's status",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		raw, err := get(cmd.Context(), c, "/api/jobs/"+url.PathEscape(args[0]), nil)
		if err != nil {
			return err
		}
		if asJSON {
			return writePretty(cmd.OutOrStdout(), raw)
		}
		return writeRecord(cmd.OutOrStdout(), raw)
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return cmd
}

func newJobLogsCmd(client clientFunc) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a submission's output (its entrypoint's stdout and stderr)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		if !follow {
			body, err := get(cmd.Context(), c, "/api/jobs/"+url.PathEscape(args[0])+"/logs", nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := followJobLog(ctx, c, args[0], cmd.OutOrStdout()); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until it ends (or Ctrl-C)")
	return cmd
}

func newJobStopCmd(client clientFunc) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a running submission (SIGTERM to its processes, SIGKILL 3 s later) and wait until it ended",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), stateTimeout)
		defer cancel()
		raw, err := c.Fetch(ctx, http.MethodPost, "/api/jobs/"+url.PathEscape(args[0])+"/stop", nil, nil, "")
		if err != nil {
			return err
		}
		var answer struct {
			Stopped bool `json:"stopped"`
		}
		if err := jsonUnmarshal(raw, &answer); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if !answer.Stopped {
			s, err := getSubmission(ctx, c, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s had ended: %s\n", args[0], describeEnd(s))
			return nil
		}
		if noWait {
			fmt.Fprintf(out, "%s is stopping\n", args[0])
			return nil
		}
		for {
			s, err := getSubmission(ctx, c, args[0])
			if err != nil {
				return err
			}
			if jobs.Final(s.Status) {
				fmt.Fprintf(out, "%s %s\n", args[0], describeEnd(s))
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s has not ended after %v", args[0], stateTimeout)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once asked, without waiting for the end")
	return cmd
}

func newJobListCmd(client clientFunc) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the submissions the head remembers, newest first",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		var page struct {
			Enabled  bool        `json:"enabled"`
			Result   []jobs.Info `json:"result"`
			Warnings []string    `json:"warnings"`
		}
		raw, err := get(cmd.Context(), c, "/api/jobs/", nil)
		if err != nil {
			return err
		}
		if err := jsonUnmarshal(raw, &page); err != nil {
			return err
		}
		if !page.Enabled && len(page.Warnings) > 0 {
			return errors.New(page.Warnings[0])
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return writePretty(out, raw)
		}
		rows := make([][]string, 0, len(page.Result))
		for _, s := range page.Result {
			code := "-"
			if s.ExitCode != nil {
				code = fmt.Sprint(*s.ExitCode)
			}
			rows = append(rows, []string{s.SubmissionID, s.Status, code, msTime(float64(s.StartTimeMs)), msTime(float64(s.EndTimeMs)), s.Entrypoint})
		}
		if err := writeTable(out, []string{"SUBMISSION_ID", "STATUS", "EXIT", "START", "END", "ENTRYPOINT"}, rows); err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%d submissions\n", len(rows))
		return err
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON")
	return cmd
}

func newJobDeleteCmd(client clientFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Forget an ended submission and remove its working directory and output",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), stateTimeout)
		defer cancel()
		if _, err := c.Fetch(ctx, http.MethodDelete, "/api/jobs/"+url.PathEscape(args[0]), nil, nil, ""); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", args[0])
		return nil
	}
	return cmd
}
