// Package stateapi is the client of a cluster's API server
// (internal/dashboard): the state API under /api/v0/ (docs/state-api.md),
// worker logs, the timeline and the job API under /api/jobs/. The CLI's
// commands and rayo.Timeline use it; nothing else speaks that HTTP API.
package stateapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// BaseURL checks addr, http(s)://HOST:PORT or HOST:PORT (then http), and
// returns it as a client's Base: with a scheme and no trailing slash.
func BaseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad dashboard address %q: want http://HOST:PORT or HOST:PORT", addr)
	}
	return strings.TrimRight(addr, "/"), nil
}

// Client talks to one API server. Its methods may be called at once from
// several goroutines; set the fields before the first call.
type Client struct {
	// Base is the server's URL, as BaseURL makes it.
	Base string
	// Token, when set, is presented as a bearer token: the cluster token,
	// which the job API's changes need.
	Token string
	// Hint is added to the error when the server cannot be reached, to
	// say what to do (the CLI names its flag).
	Hint string
	// HTTP sends the requests; nil is http.DefaultClient.
	HTTP *http.Client
}

// New returns a client of the API server at addr (see BaseURL).
func New(addr string) (*Client, error) {
	base, err := BaseURL(addr)
	if err != nil {
		return nil, err
	}
	return &Client{Base: base}, nil
}

// Open sends GET path?query and returns the response of a 2xx answer; the
// caller closes its body. Other answers become the server's error.
func (c *Client) Open(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	return c.Send(ctx, http.MethodGet, path, query, nil, "")
}

// Send makes a request with body (of type contentType, when set) and
// returns the response of a 2xx answer, as Open does.
func (c *Client) Send(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Response, error) {
	u := c.Base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c.Hint != "" {
			return nil, fmt.Errorf("cannot reach the rayo API at %s (%s): %w", c.Base, c.Hint, err)
		}
		return nil, fmt.Errorf("cannot reach the rayo API at %s: %w", c.Base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, answerError(u, resp)
	}
	return resp, nil
}

// answerError is the error of a non-2xx answer: the server's
// {"error": ...}, else the status and the start of the body.
func answerError(u string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		return fmt.Errorf("%s answered %s", u, resp.Status)
	}
	return fmt.Errorf("%s answered %s: %s", u, resp.Status, msg)
}

// Fetch sends a request as Send does and returns the whole answer.
func (c *Client) Fetch(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) ([]byte, error) {
	resp, err := c.Send(ctx, method, path, query, body, contentType)
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

// Get fetches path?query whole.
func (c *Client) Get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	return c.Fetch(ctx, http.MethodGet, path, query, nil, "")
}

// GetJSON fetches path?query and decodes it into v, numbers as
// json.Number where v leaves them open; it returns the raw body too.
func (c *Client) GetJSON(ctx context.Context, path string, query url.Values, v any) ([]byte, error) {
	body, err := c.Get(ctx, path, query)
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

// Timeline copies to w the cluster's tasks as Chrome trace events (a JSON
// array); jobID, when set, keeps one job's.
func (c *Client) Timeline(ctx context.Context, w io.Writer, jobID string) error {
	var q url.Values
	if jobID != "" {
		q = url.Values{"job_id": {jobID}}
	}
	resp, err := c.Open(ctx, "/api/v0/timeline", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("read the timeline: %w", err)
	}
	return nil
}
