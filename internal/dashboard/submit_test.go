package dashboard

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/jobs"
)

func jobServer(t *testing.T) (*httptest.Server, *jobs.Manager) {
	t.Helper()
	m, err := jobs.New(jobs.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	srv := httptest.NewServer(New(Config{Source: newFake(), Jobs: m, Token: "sekret"}))
	t.Cleanup(srv.Close)
	return srv, m
}

// do sends a request and returns the code and body.
func do(t *testing.T, method, url, token, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestJobSubmissionOverHTTP(t *testing.T) {
	srv, m := jobServer(t)
	api := srv.URL + "/api/jobs/"
	submit := `{"entrypoint": "echo one; sleep 0.2; echo two", "submission_id": "web-1", "metadata": {"team": "a"}}`

	// Running anything needs the cluster's token.
	for _, token := range []string{"", "wrong"} {
		if code, body := do(t, "POST", api, token, "application/json", []byte(submit)); code != http.StatusUnauthorized || !strings.Contains(body, "cluster token") {
			t.Fatalf("token %q: %d %s", token, code, body)
		}
	}
	if len(m.List()) != 0 {
		t.Fatal("an unauthorized submission ran")
	}
	code, body := do(t, "POST", api, "sekret", "application/json", []byte(submit))
	var answer struct {
		SubmissionID string    `json:"submission_id"`
		Job          jobs.Info `json:"job"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil || answer.SubmissionID != "web-1" || answer.Job.Status != jobs.StatusRunning {
		t.Fatalf("submit: %d %s", code, body)
	}
	// A followed log ends with the submission, and has all of its output.
	if code, body := do(t, "GET", api+"web-1/logs?follow=1", "", "", nil); code != http.StatusOK || body != "one\ntwo\n" {
		t.Fatalf("followed log: %d %q", code, body)
	}
	var info jobs.Info
	code, body = do(t, "GET", api+"web-1", "", "", nil)
	if code != http.StatusOK || json.Unmarshal([]byte(body), &info) != nil || info.Status != jobs.StatusSucceeded || info.Metadata["team"] != "a" {
		t.Fatalf("status: %d %s", code, body)
	}
	var l struct{ Result []jobs.Info }
	if code, body := do(t, "GET", api, "", "", nil); code != http.StatusOK || json.Unmarshal([]byte(body), &l) != nil || len(l.Result) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := do(t, "POST", api, "sekret", "application/json", []byte(submit)); code != http.StatusConflict {
		t.Errorf("the same ID again: %d %s", code, body)
	}

	checkStopOverHTTP(t, m, api)
	checkBadSubmissions(t, m, api)
}

// checkStopOverHTTP stops a long submission: it needs the token, and once the
// submission ended, "stopped" is false.
func checkStopOverHTTP(t *testing.T, m *jobs.Manager, api string) {
	t.Helper()
	code, body := do(t, "POST", api, "sekret", "application/json", []byte(`{"entrypoint": "sleep 60", "submission_id": "long"}`))
	if code != http.StatusOK {
		t.Fatalf("submit: %d %s", code, body)
	}
	if code, _ := do(t, "POST", api+"long/stop", "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("stop without a token: %d", code)
	}
	if code, body := do(t, "POST", api+"long/stop", "sekret", "", nil); code != http.StatusOK || !strings.Contains(body, `"stopped":true`) {
		t.Fatalf("stop: %d %s", code, body)
	}
	done, _ := m.Done("long")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped submission goes on")
	}
	if code, body := do(t, "POST", api+"long/stop", "sekret", "", nil); code != http.StatusOK || !strings.Contains(body, `"stopped":false`) {
		t.Errorf("stop again: %d %s", code, body)
	}
	if code, body := do(t, "DELETE", api+"long", "sekret", "", nil); code != http.StatusOK {
		t.Errorf("delete: %d %s", code, body)
	}
}

// checkBadSubmissions sends bad requests: each gets a clear error, and nothing runs.
func checkBadSubmissions(t *testing.T, m *jobs.Manager, api string) {
	t.Helper()
	before := len(m.List())
	for _, tc := range []struct {
		method, path, contentType, body string
		code                            int
		want                            string
	}{
		{"POST", "", "application/json", `{"entrypoint": `, http.StatusBadRequest, "bad submission JSON"},
		{"POST", "", "application/json", `{"entrypoint": ""}`, http.StatusBadRequest, "the entrypoint is empty"},
		{"POST", "", "text/plain", `echo hi`, http.StatusUnsupportedMediaType, "want application/json or multipart/form-data"},
		{"POST", "", "application/json", `{"entrypoint": "true", "submission_id": "a/b"}`, http.StatusBadRequest, "submission ID"},
		{"GET", "nosuch", "", "", http.StatusNotFound, "no such job submission"},
		{"GET", "nosuch/logs", "", "", http.StatusNotFound, "no such job submission"},
		{"POST", "nosuch/stop", "", "", http.StatusNotFound, "no such job submission"},
		{"DELETE", "nosuch", "", "", http.StatusNotFound, "no such job submission"},
	} {
		code, body := do(t, tc.method, api+tc.path, "sekret", tc.contentType, []byte(tc.body))
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s %q: %d %s, want %d %q", tc.method, tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}
	if len(m.List()) != before {
		t.Errorf("bad submissions were kept: %d, want %d", len(m.List()), before)
	}
}

func TestJobSubmissionUploadsItsWorkingDir(t *testing.T) {
	srv, m := jobServer(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "prog.sh"), []byte("#!/bin/sh\necho from the upload\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormField("request")
	_, _ = part.Write([]byte(`{"entrypoint": "./prog.sh", "submission_id": "up"}`))
	part, _ = mw.CreateFormFile("working_dir", "wd.tar.gz")
	if err := jobs.Pack(part, src, jobs.MaxWorkingDir); err != nil {
		t.Fatal(err)
	}
	_ = mw.Close()
	if code, out := do(t, "POST", srv.URL+"/api/jobs/", "sekret", mw.FormDataContentType(), body.Bytes()); code != http.StatusOK {
		t.Fatalf("submit: %d %s", code, out)
	}
	if code, out := do(t, "GET", srv.URL+"/api/jobs/up/logs?follow=1", "", "", nil); code != http.StatusOK || out != "from the upload\n" {
		t.Fatalf("log: %d %q", code, out)
	}
	if info, _ := m.Get("up"); info.Status != jobs.StatusSucceeded {
		t.Fatalf("status: %+v", info)
	}
}

func TestNoJobSubmissionWithoutAManager(t *testing.T) {
	s := New(Config{Source: newFake()})
	var l struct {
		Enabled  bool
		Result   []jobs.Info
		Warnings []string
	}
	if code := get(t, s, "/api/jobs/", &l); code != http.StatusOK || l.Enabled || len(l.Result) != 0 || len(l.Warnings) != 1 {
		t.Fatalf("list: %d %+v", code, l)
	}
	var e apiErr
	if code := get(t, s, "/api/jobs/x", &e); code != http.StatusNotFound || !strings.Contains(e.Error, "rayo start --head") {
		t.Fatalf("one: %d %q", code, e.Error)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, localRequest(http.MethodPost, "/api/jobs/", strings.NewReader(`{"entrypoint": "true"}`)))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("submit: %d %s", rec.Code, rec.Body)
	}
}
