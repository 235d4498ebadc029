package raylet

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rayo-dev/rayo/internal/ids"
)

// NameMarker starts a line a worker writes to its own output to say which
// task its next lines belong to; the raylet strips it.
const NameMarker = "\x00rayo-task:"

// startWorkerLocked starts one worker process: the configured executable
// in worker mode, its stdout and stderr captured into one log.
func (r *Raylet) startWorkerLocked(jobID string) error {
	exe, args, env := r.cfg.WorkerExe, r.cfg.WorkerArgs, r.cfg.WorkerEnv
	if jobID != "" {
		j := r.jobs[jobID]
		if j == nil {
			return fmt.Errorf("raylet: job %q has ended", jobID)
		}
		exe, args, env = j.exe, j.args, j.env
	}
	if exe == "" {
		return errors.New("raylet: no job on this node has given it a worker executable yet")
	}
	wid := ids.NewWorkerID()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env,
		EnvJob+"="+jobID,
		EnvWorkerID+"="+wid.String(),
		EnvRaylet+"="+r.addr,
		EnvStore+"=fd:3",
		EnvSessionDir+"="+r.cfg.SessionDir,
	)
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("raylet: worker pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	store, err := r.arena.File()
	if err != nil {
		_ = pr.Close()
		_ = pw.Close()
		return err
	}
	cmd.ExtraFiles = []*os.File{store} // fd 3 in the worker
	err = cmd.Start()
	_ = pw.Close()
	_ = store.Close()
	if err != nil {
		_ = pr.Close()
		return fmt.Errorf("raylet: start worker: %w", err)
	}
	w := &workerProc{job: jobID, id: wid, pid: cmd.Process.Pid, proc: cmd.Process, exited: make(chan struct{})}
	r.workers[wid] = w
	r.log.Debug("worker started", "pid", w.pid, "job", jobID)
	r.starting++
	r.startingJ[jobID]++
	r.procs.Add(2)
	go func() {
		defer r.procs.Done()
		_ = cmd.Wait()
		r.mu.Lock()
		r.workerGoneLocked(w)
		var after []func()
		r.grantLocked(&after)
		r.mu.Unlock()
		run(after)
		close(w.exited)
	}()
	go func() {
		defer r.procs.Done()
		r.copyLog(pr, w.pid)
	}()
	return nil
}

// copyLog writes a worker's output to its log file and, when asked, to the
// driver, each line prefixed with the task's name and the worker's pid.
func (r *Raylet) copyLog(pr *os.File, pid int) {
	defer pr.Close()
	f, err := os.Create(filepath.Join(r.cfg.SessionDir, "logs", fmt.Sprintf("worker-%d.log", pid)))
	if err != nil {
		f = nil
	}
	if f != nil {
		defer f.Close()
	}
	name := "worker"
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, NameMarker); i >= 0 {
			name = line[i+len(NameMarker):]
			line = line[:i]
			if line == "" {
				continue
			}
		}
		// The driver's copy first: once a line is in the file, it has been
		// shown (tests rely on that order).
		if r.cfg.LogToDriver {
			r.logMu.Lock()
			fmt.Fprintf(r.cfg.LogOutput, "(%s pid=%d) %s\n", name, pid, line)
			r.logMu.Unlock()
		}
		if f != nil {
			fmt.Fprintln(f, line)
		}
	}
}
