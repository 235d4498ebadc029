package stateapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestBaseURL(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "127.0.0.1:8265", want: "http://127.0.0.1:8265"},
		{in: "http://h:1/", want: "http://h:1"},
		{in: "https://h:1", want: "https://h:1"},
		{in: "ftp://h:1", err: `bad dashboard address "ftp://h:1"`},
		{in: "http://", err: `bad dashboard address "http://"`},
		{in: "http://h:1/%zz", err: "bad dashboard address"},
	} {
		got, err := BaseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("BaseURL(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := New("ftp://x"); err == nil {
		t.Error("New accepted an ftp address")
	}
}

// server answers like the API server: a JSON record, a JSON error, a
// plain error, the timeline, and what token it was shown.
func server(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v0/nodes", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"total": 2, "q": r.URL.Query().Get("limit")})
	})
	mux.HandleFunc("/api/v0/bad", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error": "unknown filter key \"x\""}`))
	})
	mux.HandleFunc("/api/v0/plain", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strings.Repeat("y", 300), http.StatusInternalServerError)
	})
	mux.HandleFunc("/api/v0/empty", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	})
	mux.HandleFunc("/api/v0/notjson", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("not json"))
	})
	mux.HandleFunc("/api/v0/timeline", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`[{"job":"` + r.URL.Query().Get("job_id") + `"}]`))
	})
	mux.HandleFunc("/api/jobs/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.Method + " " + r.Header.Get("Authorization") + " " + r.Header.Get("Content-Type")))
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestGetAndErrors(t *testing.T) {
	s := server(t)
	c, err := New(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var v map[string]any
	body, err := c.GetJSON(ctx, "/api/v0/nodes", url.Values{"limit": {"5"}}, &v)
	if err != nil || v["total"] != json.Number("2") || v["q"] != "5" || !bytes.Contains(body, []byte(`"total":2`)) {
		t.Fatalf("GetJSON = %v, %q, %v", v, body, err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/api/v0/bad", `unknown filter key "x"`},
		{"/api/v0/plain", "answered 500 Internal Server Error: " + strings.Repeat("y", 200) + "..."},
		{"/api/v0/empty", s.URL + "/api/v0/empty answered 404 Not Found"},
	} {
		if _, err := c.Get(ctx, tc.path, nil); err == nil || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("Get %s: %v, want an error ending %q", tc.path, err, tc.want)
		}
	}
	if _, err := c.GetJSON(ctx, "/api/v0/notjson", nil, &v); err == nil || !strings.Contains(err.Error(), "decode the answer of /api/v0/notjson") {
		t.Errorf("GetJSON of a non-JSON answer: %v", err)
	}
}

func TestTokenAndBody(t *testing.T) {
	s := server(t)
	c := &Client{Base: s.URL}
	got, err := c.Fetch(context.Background(), http.MethodPost, "/api/jobs/", nil, strings.NewReader("{}"), "application/json")
	if err != nil || string(got) != "POST  application/json" {
		t.Fatalf("without a token: %q, %v", got, err)
	}
	c.Token = "secret"
	got, err = c.Fetch(context.Background(), http.MethodDelete, "/api/jobs/x", nil, nil, "")
	if err != nil || string(got) != "DELETE Bearer secret " {
		t.Fatalf("with a token: %q, %v", got, err)
	}
}

func TestTimeline(t *testing.T) {
	c := &Client{Base: server(t).URL}
	var buf bytes.Buffer
	if err := c.Timeline(context.Background(), &buf, "job 1"); err != nil || buf.String() != `[{"job":"job 1"}]` {
		t.Fatalf("Timeline = %q, %v", buf.String(), err)
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), "/api/v0/nodes", nil)
	if want := "cannot reach the rayo API at http://" + addr + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("unreachable: %v, want %q...", err, want)
	}
	c.Hint = "start one"
	_, err = c.Get(context.Background(), "/api/v0/nodes", nil)
	if want := "cannot reach the rayo API at http://" + addr + " (start one): "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("unreachable with a hint: %v, want %q...", err, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "/api/v0/nodes", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("ended ctx: %v", err)
	}
}
