package dashboard

// Job submission (Ray's Jobs API, under /api/jobs/): the head runs
// submitted entrypoints with a jobs.Manager. Requests that start or stop
// programs must carry the cluster token (Authorization: Bearer TOKEN):
// whoever reaches the API server could otherwise run commands on the head.

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/pki"
)

// maxSubmitJSON bounds a submission's JSON part.
const maxSubmitJSON = 1 << 20

// SubmitRequest is the JSON of POST /api/jobs/: alone (application/json),
// or as the "request" part of a multipart/form-data body whose
// "working_dir" part is a gzip-compressed tar of the working directory.
type SubmitRequest struct {
	Entrypoint   string            `json:"entrypoint"`
	SubmissionID string            `json:"submission_id,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

func (s *Server) routeJobs() {
	s.mux.HandleFunc("POST /api/jobs/{$}", s.submitJob)
	s.mux.HandleFunc("GET /api/jobs/{$}", s.listSubmissions)
	s.mux.HandleFunc("GET /api/jobs/{id}", s.getSubmission)
	s.mux.HandleFunc("GET /api/jobs/{id}/logs", s.submissionLogs)
	s.mux.HandleFunc("POST /api/jobs/{id}/stop", s.stopSubmission)
	s.mux.HandleFunc("DELETE /api/jobs/{id}", s.deleteSubmission)
}

var errNoJobs = errors.New("job submission runs on a cluster's head (rayo start --head); this API server has none")

// jobsOr answers 404 when there is no manager, and reports whether there
// is one.
func (s *Server) jobsOr(w http.ResponseWriter) bool {
	if s.cfg.Jobs == nil {
		fail(w, http.StatusNotFound, errNoJobs)
		return false
	}
	return true
}

// authorized checks the cluster token of a request that runs or stops
// programs.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.hasToken(r) {
		return true
	}
	if got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); pki.IsJobCredential(got) {
		fail(w, http.StatusForbidden, errors.New("submitting or stopping a job needs the cluster token: a job's credential may not"))
		return false
	}
	fail(w, http.StatusUnauthorized, errors.New("submitting or stopping a job needs the cluster token (Authorization: Bearer TOKEN; rayo job reads it from RAYO_TOKEN or this machine's cluster record)"))
	return false
}

// hasToken reports whether r carries the cluster token (or the join
// token, which holds it), or none is set.
func (s *Server) hasToken(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return s.cfg.Token == "" || ok && subtle.ConstantTimeCompare([]byte(pki.Secret(got)), []byte(pki.Secret(s.cfg.Token))) == 1
}

func jobsErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, jobs.ErrUnknown):
		fail(w, http.StatusNotFound, err)
	case errors.Is(err, jobs.ErrBad):
		fail(w, http.StatusBadRequest, err)
	case errors.Is(err, jobs.ErrConflict):
		fail(w, http.StatusConflict, err)
	case errors.Is(err, jobs.ErrClosed):
		fail(w, http.StatusServiceUnavailable, err)
	default:
		fail(w, http.StatusInternalServerError, err)
	}
}

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	if !s.jobsOr(w) || !s.authorized(w, r) {
		return
	}
	var req SubmitRequest
	var workDir io.Reader
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json", "":
		if err := json.NewDecoder(io.LimitReader(r.Body, maxSubmitJSON)).Decode(&req); err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("bad submission JSON: %w", err))
			return
		}
	case "multipart/form-data":
		// The reader may pull only so much before each part's headers
		// are parsed (GO-2026-6608; see maxPartHeaders).
		body := &budgetReader{r: r.Body, left: maxPartHeaders}
		mr := multipart.NewReader(body, params["boundary"])
		// The request first, then the working directory, streamed.
		p, err := mr.NextPart()
		if isPartHeaders(err) {
			fail(w, http.StatusRequestEntityTooLarge, err)
			return
		}
		if err != nil || p.FormName() != "request" {
			fail(w, http.StatusBadRequest, errors.New("a multipart submission starts with its \"request\" part (JSON)"))
			return
		}
		body.left = maxSubmitJSON + maxPartHeaders // the JSON, with the reader's read-ahead
		if err := json.NewDecoder(io.LimitReader(p, maxSubmitJSON)).Decode(&req); err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("bad submission JSON: %w", err))
			return
		}
		body.left = maxPartHeaders // the rest of the request part, then the next part's headers
		p, err = mr.NextPart()
		if isPartHeaders(err) {
			fail(w, http.StatusRequestEntityTooLarge, err)
			return
		}
		if err == nil && p.FormName() == "working_dir" {
			body.left = -1 // its content is streamed: jobs.Unpack bounds it; no headers follow
			workDir = p
		} else if err != io.EOF {
			fail(w, http.StatusBadRequest, errors.New("a multipart submission's second part is its \"working_dir\" (a gzip-compressed tar)"))
			return
		}
	default:
		fail(w, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want application/json or multipart/form-data", mt))
		return
	}
	info, err := s.cfg.Jobs.Submit(jobs.Request{
		Entrypoint: req.Entrypoint, SubmissionID: req.SubmissionID, Env: req.Env, Metadata: req.Metadata, WorkingDir: workDir,
	})
	if err != nil {
		jobsErr(w, err)
		return
	}
	reply(w, map[string]any{"submission_id": info.SubmissionID, "job": info})
}

// listSubmissions lists the submissions; "enabled" says whether this API
// server runs any (the dashboard asks without knowing, so no 404 here).
func (s *Server) listSubmissions(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Jobs == nil {
		reply(w, map[string]any{"enabled": false, "result": []jobs.Info{}, "warnings": []string{errNoJobs.Error()}})
		return
	}
	reply(w, map[string]any{"enabled": true, "result": s.cfg.Jobs.List()})
}

func (s *Server) getSubmission(w http.ResponseWriter, r *http.Request) {
	if !s.jobsOr(w) {
		return
	}
	info, err := s.cfg.Jobs.Get(r.PathValue("id"))
	if err != nil {
		jobsErr(w, err)
		return
	}
	reply(w, info)
}

func (s *Server) stopSubmission(w http.ResponseWriter, r *http.Request) {
	if !s.jobsOr(w) || !s.authorized(w, r) {
		return
	}
	stopped, err := s.cfg.Jobs.Stop(r.PathValue("id"))
	if err != nil {
		jobsErr(w, err)
		return
	}
	reply(w, map[string]bool{"stopped": stopped})
}

func (s *Server) deleteSubmission(w http.ResponseWriter, r *http.Request) {
	if !s.jobsOr(w) || !s.authorized(w, r) {
		return
	}
	if err := s.cfg.Jobs.Delete(r.PathValue("id")); err != nil {
		jobsErr(w, err)
		return
	}
	reply(w, map[string]bool{"deleted": true})
}

// submissionLogs is the entrypoint's output as text; with follow=1 it
// streams on until the submission ends.
func (s *Server) submissionLogs(w http.ResponseWriter, r *http.Request) {
	if !s.jobsOr(w) {
		return
	}
	id := r.PathValue("id")
	info, err := s.cfg.Jobs.Get(id)
	if err != nil {
		jobsErr(w, err)
		return
	}
	done, err := s.cfg.Jobs.Done(id)
	if err != nil {
		jobsErr(w, err)
		return
	}
	f, err := os.Open(info.LogFile)
	if errors.Is(err, os.ErrNotExist) {
		f = nil // not started: no output yet
	} else if err != nil {
		fail(w, http.StatusInternalServerError, fmt.Errorf("log of %s: %w", id, err))
		return
	}
	if f != nil {
		defer f.Close()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	copyOut := func() error {
		if f == nil {
			if f, err = os.Open(info.LogFile); err != nil {
				return nil
			}
		}
		_, err := io.Copy(w, f)
		return err
	}
	if err := copyOut(); err != nil {
		return
	}
	if v := r.URL.Query().Get("follow"); v != "1" && v != "true" {
		return
	}
	flusher, _ := w.(http.Flusher)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-done:
			_ = copyOut() // what it wrote last
			return
		case <-tick.C:
			if copyOut() != nil {
				return
			}
		}
	}
}
