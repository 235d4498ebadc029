// Package jobs runs the programs submitted to a cluster's head (rayo job
// submit, Ray's job submission): each entrypoint is a shell command that
// the head runs as a process group of its own, in a working directory
// the submitter may upload, with RAYO_ADDRESS and RAYO_TOKEN (a
// credential of the job it will be, not the cluster's secret) set so that
// its rayo.Init joins the cluster as a driver. Its output goes to a log
// file; its status is PENDING while its working directory unpacks,
// RUNNING, then SUCCEEDED, FAILED or STOPPED.
package jobs

import (
	"archive/tar"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The states of a submission, as Ray names them.
const (
	StatusPending   = "PENDING"
	StatusRunning   = "RUNNING"
	StatusSucceeded = "SUCCEEDED"
	StatusFailed    = "FAILED"
	StatusStopped   = "STOPPED"
)

// EnvSubmissionID names, in a submitted entrypoint's environment, its
// submission; a driver started there records it with its job.
const EnvSubmissionID = "RAYO_SUBMISSION_ID"

// Errors of the manager; the API server answers them as 404, 400 and 409.
var (
	ErrUnknown  = errors.New("no such job submission")
	ErrBad      = errors.New("jobs: bad submission")
	ErrConflict = errors.New("jobs: conflict")
	ErrClosed   = errors.New("jobs: the manager is closed")
)

// Limits.
const (
	// MaxWorkingDir bounds an uploaded working directory, packed and
	// unpacked.
	MaxWorkingDir = 512 << 20
	// maxFinished is how many ended submissions are remembered.
	maxFinished = 1000
)

// stopGrace is how long a stopped entrypoint has between SIGTERM and
// SIGKILL.
var stopGrace = 3 * time.Second

// Config configures a Manager.
type Config struct {
	// Dir holds a folder per submission: its working directory and log.
	Dir string
	// Env is added to every entrypoint's environment (RAYO_ADDRESS),
	// after the head's own.
	Env []string
	// JobEnv, when set, is called for each submission, and what it
	// returns is added after Env: the credential of the job its driver
	// will be (RAYO_TOKEN), made for it alone.
	JobEnv func(submissionID string) []string
	// Hide names variables of the head's environment that entrypoints do
	// not get (its secrets, such as RAYO_REDIS_PASSWORD).
	Hide []string
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// Log hears of each submission's start and end; nil: nothing is said.
	Log *slog.Logger
	// OnEnd, when set, hears how each submission ended (the cluster's
	// control store settles the state of the job its driver ran by it).
	// It is called once per submission, with no lock held, and must not
	// block for long.
	OnEnd func(Info)
}

// Request is one submission.
type Request struct {
	Entrypoint   string            // a shell command
	SubmissionID string            // optional; made up when empty
	Env          map[string]string // added to its environment
	Metadata     map[string]string // kept with it, for the submitter
	// WorkingDir, when set, is a gzip-compressed tar of the directory the
	// entrypoint runs in; otherwise it runs in an empty one.
	WorkingDir io.Reader
}

// Info is what the manager knows of a submission.
type Info struct {
	SubmissionID string            `json:"submission_id"`
	Entrypoint   string            `json:"entrypoint"`
	Status       string            `json:"status"`
	Message      string            `json:"message"`
	ExitCode     *int              `json:"exit_code"`
	PID          int               `json:"pid"` // the entrypoint's shell, whose ID its process group has
	StartTimeMs  int64             `json:"start_time_ms"`
	EndTimeMs    int64             `json:"end_time_ms"`
	WorkingDir   string            `json:"working_dir"`
	LogFile      string            `json:"log_file"`
	Metadata     map[string]string `json:"metadata"`
}

// Final reports whether status is one a submission ends in.
func Final(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusStopped
}

type job struct {
	info    Info
	proc    *os.Process
	stopped bool          // Stop asked: the end is STOPPED whatever the exit
	stopWhy string        // and why
	done    chan struct{} // closed when it ended
}

// Manager runs submissions. Its methods are safe for concurrent use.
type Manager struct {
	cfg    Config
	mu     sync.Mutex
	jobs   map[string]*job
	closed bool
	wg     sync.WaitGroup // one per running entrypoint
}

// New makes a manager; nothing runs until Submit.
func New(cfg Config) (*Manager, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return &Manager{cfg: cfg, jobs: make(map[string]*job)}, nil
}

// validID is a submission ID's form: 1 to maxIDLen of A-Z, a-z, 0-9, _, .
// and -. (Not a regular expression: compiling {1,128} at start-up took 2
// ms of every process's start, workers' included.)
func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// maxIDLen bounds a submission ID.
const maxIDLen = 128

// Submit starts a submission: it is RUNNING (or FAILED, if its working
// directory does not unpack or the shell does not start) when Submit
// returns.
func (m *Manager) Submit(req Request) (Info, error) {
	id, err := checkRequest(req)
	if err != nil {
		return Info{}, err
	}
	dir := filepath.Join(m.cfg.Dir, id)
	j := &job{done: make(chan struct{}), info: Info{
		SubmissionID: id, Entrypoint: req.Entrypoint, Status: StatusPending,
		StartTimeMs: m.cfg.Now().UnixMilli(), WorkingDir: filepath.Join(dir, "work"),
		LogFile: filepath.Join(dir, "driver.log"), Metadata: maps.Clone(req.Metadata),
	}}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return Info{}, ErrClosed
	case m.jobs[id] != nil:
		m.mu.Unlock()
		return Info{}, fmt.Errorf("%w: submission %s exists", ErrConflict, id)
	}
	m.jobs[id] = j
	m.wg.Add(1)
	m.mu.Unlock()

	if err := m.prepare(j, req.WorkingDir); err != nil {
		m.end(j, StatusFailed, nil, err.Error())
		m.wg.Done()
		return m.info(j), nil
	}
	log, err := os.OpenFile(j.info.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.end(j, StatusFailed, nil, fmt.Sprintf("log file: %v", err))
		m.wg.Done()
		return m.info(j), nil
	}
	cmd := m.command(req, j, id, log)
	m.mu.Lock()
	if m.closed || j.stopped {
		why := j.stopWhy
		if why == "" {
			why = "stopped: the head shut down"
		}
		m.mu.Unlock()
		_ = log.Close()
		m.end(j, StatusStopped, nil, why+" before it started")
		m.wg.Done()
		return m.info(j), nil
	}
	err = cmd.Start()
	if err == nil {
		j.proc = cmd.Process
		j.info.Status, j.info.PID = StatusRunning, cmd.Process.Pid
	}
	m.mu.Unlock()
	if err != nil {
		_ = log.Close()
		m.end(j, StatusFailed, nil, fmt.Sprintf("start: %v", err))
		m.wg.Done()
		return m.info(j), nil
	}
	m.cfg.Log.Info("job submission started", "submission_id", id, "entrypoint", req.Entrypoint, "pid", cmd.Process.Pid)
	go m.wait(j, cmd, log)
	return m.info(j), nil
}

// checkRequest checks a submission and returns its ID (a new one when it
// has none).
func checkRequest(req Request) (string, error) {
	if strings.TrimSpace(req.Entrypoint) == "" {
		return "", fmt.Errorf("%w: the entrypoint is empty", ErrBad)
	}
	id := req.SubmissionID
	if id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = "rayosubmit_" + hex.EncodeToString(b[:])
	}
	if !validID(id) || id == "." || id == ".." {
		return "", fmt.Errorf("%w: submission ID %q: want 1 to 128 letters, digits, '_', '-' or '.'", ErrBad, id)
	}
	for k := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return "", fmt.Errorf("%w: environment variable name %q", ErrBad, k)
		}
	}
	return id, nil
}

// command is the entrypoint's process, in a process group of its own, in
// the job's working folder, its output to log: the head's environment
// but m.cfg.Hide, then m.cfg.Env, then the submission's.
func (m *Manager) command(req Request, j *job, id string, log *os.File) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", req.Entrypoint)
	cmd.Dir = j.info.WorkingDir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var env []string
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !slices.Contains(m.cfg.Hide, name) {
			env = append(env, kv)
		}
	}
	env = append(env, m.cfg.Env...)
	if m.cfg.JobEnv != nil {
		env = append(env, m.cfg.JobEnv(id)...)
	}
	for _, k := range slices.Sorted(maps.Keys(req.Env)) {
		env = append(env, k+"="+req.Env[k])
	}
	cmd.Env = append(env, EnvSubmissionID+"="+id)
	return cmd
}

// wait records how a started entrypoint ends.
func (m *Manager) wait(j *job, cmd *exec.Cmd, log *os.File) {
	defer m.wg.Done()
	werr := cmd.Wait()
	_ = log.Close()
	code := cmd.ProcessState.ExitCode()
	m.mu.Lock()
	stopped, why := j.stopped, j.stopWhy
	m.mu.Unlock()
	switch {
	case stopped:
		m.end(j, StatusStopped, &code, why)
	case werr == nil:
		m.end(j, StatusSucceeded, &code, "")
	case code >= 0:
		m.end(j, StatusFailed, &code, fmt.Sprintf("the entrypoint exited with code %d", code))
	default:
		m.end(j, StatusFailed, &code, fmt.Sprintf("the entrypoint ended: %v", werr))
	}
}

// prepare makes a submission's folder and unpacks its working directory.
func (m *Manager) prepare(j *job, archive io.Reader) error {
	if err := os.MkdirAll(j.info.WorkingDir, 0o700); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if archive == nil {
		return nil
	}
	if err := Unpack(archive, j.info.WorkingDir, MaxWorkingDir); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	return nil
}

// end records how a submission ended and forgets the oldest ended ones
// past maxFinished.
func (m *Manager) end(j *job, status string, code *int, msg string) {
	m.cfg.Log.Info("job submission ended", "submission_id", j.info.SubmissionID, "status", status, "message", msg)
	m.mu.Lock()
	j.info.Status, j.info.ExitCode, j.info.Message = status, code, msg
	j.info.EndTimeMs = m.cfg.Now().UnixMilli()
	j.proc = nil
	close(j.done)
	info := j.info
	m.pruneLocked()
	m.mu.Unlock()
	if m.cfg.OnEnd != nil {
		m.cfg.OnEnd(info)
	}
}

// pruneLocked forgets the oldest ended submissions past maxFinished.
func (m *Manager) pruneLocked() {
	var ended []*job
	for _, x := range m.jobs {
		if Final(x.info.Status) {
			ended = append(ended, x)
		}
	}
	if len(ended) <= maxFinished {
		return
	}
	sort.Slice(ended, func(a, b int) bool { return ended[a].info.EndTimeMs > ended[b].info.EndTimeMs })
	for _, x := range ended[maxFinished:] {
		delete(m.jobs, x.info.SubmissionID)
		_ = os.RemoveAll(filepath.Dir(x.info.WorkingDir))
	}
}

func (m *Manager) info(j *job) Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return j.info
}

// Get is one submission.
func (m *Manager) Get(id string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil {
		return Info{}, fmt.Errorf("%w %q", ErrUnknown, id)
	}
	return j.info, nil
}

// List is every submission the manager remembers, newest first.
func (m *Manager) List() []Info {
	m.mu.Lock()
	out := make([]Info, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j.info)
	}
	m.mu.Unlock()
	sort.Slice(out, func(a, b int) bool {
		if out[a].StartTimeMs != out[b].StartTimeMs {
			return out[a].StartTimeMs > out[b].StartTimeMs
		}
		return out[a].SubmissionID < out[b].SubmissionID
	})
	return out
}

// Stop ends a running submission: SIGTERM to its process group, SIGKILL
// after a grace. It reports false if the submission had ended already.
func (m *Manager) Stop(id string) (bool, error) {
	m.mu.Lock()
	j := m.jobs[id]
	if j == nil {
		m.mu.Unlock()
		return false, fmt.Errorf("%w %q", ErrUnknown, id)
	}
	if Final(j.info.Status) {
		m.mu.Unlock()
		return false, nil
	}
	j.stopped, j.stopWhy = true, "stopped on request"
	proc := j.proc
	m.mu.Unlock()
	if proc != nil {
		m.signal(j, proc)
	}
	return true, nil
}

// signal stops a process group: SIGTERM, then SIGKILL if it is still
// there after stopGrace.
func (m *Manager) signal(j *job, proc *os.Process) {
	_ = syscall.Kill(-proc.Pid, syscall.SIGTERM)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-j.done:
		case <-t.C:
		}
		// The group may outlive its leader: kill what is left of it.
		_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
	}()
}

// Delete forgets an ended submission and removes its folder.
func (m *Manager) Delete(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	switch {
	case j == nil:
		return fmt.Errorf("%w %q", ErrUnknown, id)
	case !Final(j.info.Status):
		return fmt.Errorf("%w: submission %s is %s: stop it first", ErrConflict, id, j.info.Status)
	}
	delete(m.jobs, id)
	return os.RemoveAll(filepath.Dir(j.info.WorkingDir))
}

// Done is closed when the submission ends.
func (m *Manager) Done(id string) (<-chan struct{}, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknown, id)
	}
	return j.done, nil
}

// Close stops every running submission and waits until they ended.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	var running []*job
	for _, j := range m.jobs {
		if !Final(j.info.Status) {
			j.stopped, j.stopWhy = true, "stopped: the head shut down"
			running = append(running, j)
		}
	}
	m.mu.Unlock()
	for _, j := range running {
		m.mu.Lock()
		proc := j.proc
		m.mu.Unlock()
		if proc != nil {
			m.signal(j, proc)
		}
	}
	m.wg.Wait()
	return nil
}

// Unpack extracts a gzip-compressed tar into dir: regular files and
// folders only, every path inside dir, at most limit bytes in all.
func Unpack(r io.Reader, dir string, limit int64) error {
	zr, err := gzip.NewReader(io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("not a gzip-compressed tar: %w", err)
	}
	tr := tar.NewReader(zr)
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%q is outside the working directory", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			total += h.Size
			if h.Size < 0 || total > limit {
				return fmt.Errorf("more than %d bytes unpacked", limit)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o700|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpack %s: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("%q: only regular files and folders can be uploaded", h.Name)
		}
	}
}

// Pack writes dir as a gzip-compressed tar of its regular files and
// folders (a symbolic link to a file is packed as that file; one to a
// folder is left out), failing past limit bytes.
func Pack(w io.Writer, dir string, limit int64) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	var total int64
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			if fi, err = os.Stat(path); err != nil {
				return err
			}
			if fi.IsDir() {
				return nil // a link to a folder is not followed
			}
		}
		switch {
		case fi.IsDir():
			return tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel) + "/", Typeflag: tar.TypeDir, Mode: 0o700})
		case !fi.Mode().IsRegular():
			return nil // sockets, devices: not part of a program
		}
		total += fi.Size()
		if total > limit {
			return fmt.Errorf("the working directory holds more than %d bytes", limit)
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: fi.Size()}); err != nil {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, fi.Size())
		return err
	})
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
