package node

// The control store as a process of its own (Config.GCSCommand): the head
// starts it, waits until it serves, starts it again when it exits, and
// stops it on Close.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// GCSPIDFile, in the head's session folder, holds the pid of its control
// store process while it runs.
const GCSPIDFile = "gcs.pid"

// GCSLogFile, in the head's session folder, is the control store's output
// and the head's notes on starting and restarting it.
const GCSLogFile = "logs/gcs.log"

const (
	// gcsRestartPause is how long the head waits before it starts again a
	// control store that exited; the pause doubles, up to
	// gcsRestartMaxPause, while it keeps exiting soon after it starts.
	gcsRestartPause    = 500 * time.Millisecond
	gcsRestartMaxPause = 10 * time.Second
	// gcsStableAfter is how long a control store must run for the next
	// pause to be gcsRestartPause again.
	gcsStableAfter = 30 * time.Second
	// gcsStopTimeout is how long Close waits, after SIGTERM, for the
	// control store to exit before it kills it.
	gcsStopTimeout = 10 * time.Second
	// gcsPollInterval paces the checks that a new control store serves.
	gcsPollInterval = 20 * time.Millisecond
)

var errGCSStopping = errors.New("node: the control store is being stopped")

// gcsProc runs the control store process and starts it again when it
// exits unexpectedly.
type gcsProc struct {
	argv, env   []string
	addr, token string
	pidPath     string
	logPath     string
	log         *os.File  // GCSLogFile, open for appending; the supervisor closes it
	notes       io.Writer // Config.Log, or nil

	mu       sync.Mutex // protects the fields below
	cmd      *exec.Cmd  // the running process, or nil
	pid      int        // its pid, or the last one's
	armed    bool       // it served: start it again when it exits
	stopping bool

	stop      chan struct{} // closed by close
	firstExit chan error    // the first process's end, if before it served (buffered)
	done      chan struct{} // closed when the supervisor returns
}

// startGCSProc starts the control store process for the head with
// session folder session, listening on addr, and waits (within ctx) until
// it answers there.
func startGCSProc(ctx context.Context, cfg Config, addr, session string) (*gcsProc, error) {
	if err := os.MkdirAll(filepath.Join(session, filepath.Dir(GCSLogFile)), 0o755); err != nil {
		return nil, fmt.Errorf("node: control store log: %w", err)
	}
	logPath := filepath.Join(session, GCSLogFile)
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: control store log: %w", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	argv := append(append([]string(nil), cfg.GCSCommand...), "--host", cfg.Host, "--port", port)
	if cfg.RedisAddress != "" {
		argv = append(argv, "--redis-address", cfg.RedisAddress)
	}
	if cfg.MaxTaskRecords > 0 {
		argv = append(argv, "--max-task-records", strconv.Itoa(cfg.MaxTaskRecords))
	}
	// The secrets go in the environment, not on the command line that ps
	// shows.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAYO_TOKEN=") && !strings.HasPrefix(kv, "RAYO_REDIS_PASSWORD=") {
			env = append(env, kv)
		}
	}
	env = append(env, "RAYO_TOKEN="+cfg.Token, "RAYO_REDIS_PASSWORD="+cfg.RedisPassword)
	if cfg.TLS && cfg.TLSCert == "" {
		env = append(env, pki.EnvCADir+"="+CADir(cfg.StateDir)) // it signs joining nodes' certificates
	}
	p := &gcsProc{
		argv: argv, env: env, addr: addr, token: cfg.Token,
		pidPath: filepath.Join(session, GCSPIDFile), logPath: logPath, log: lf, notes: cfg.Log,
		stop: make(chan struct{}), firstExit: make(chan error, 1), done: make(chan struct{}),
	}
	started := make(chan error, 1)
	go p.supervise(started)
	if err := <-started; err != nil {
		<-p.done
		return nil, err
	}
	exited := func(err error) (*gcsProc, error) {
		<-p.done
		_ = os.Remove(p.pidPath)
		return nil, p.startError(err)
	}
	for {
		if p.serves(ctx) {
			p.mu.Lock()
			select {
			case err := <-p.firstExit: // it answered, then exited at once
				p.mu.Unlock()
				return exited(err)
			default:
				p.armed = true
			}
			p.mu.Unlock()
			return p, nil
		}
		select {
		case err := <-p.firstExit:
			return exited(err)
		case <-ctx.Done():
			_ = p.close()
			return nil, fmt.Errorf("node: the control store did not come up at %s (see %s): %w", addr, logPath, ctx.Err())
		case <-time.After(gcsPollInterval): // polling another process
		}
	}
}

// startError describes a control store that exited before it served,
// with the end of its log.
func (p *gcsProc) startError(exit error) error {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return fmt.Errorf("node: the control store exited before it served (%w); %s ends:\n%s", exit, p.logPath, b)
}

// serves says whether the control store answers at its address.
func (p *gcsProc) serves(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := rpc.DialToken(ctx, "tcp:"+p.addr, p.token, nil)
	if err != nil {
		return false
	}
	defer c.Close()
	return c.Call(ctx, rpc.MListNodes, &pb.Empty{}, &pb.NodeList{}) == nil
}

// supervise starts the control store, reports the first start on
// started, and starts it again, after a pause, whenever it exits while it
// is neither being stopped nor still on its first start.
func (p *gcsProc) supervise(started chan<- error) {
	defer close(p.done)
	defer p.log.Close()
	// The kernel sends Pdeathsig when the thread that started the child
	// ends, not the process: this goroutine keeps its thread while it has
	// a child, so that the child dies with the head and only then.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pause := gcsRestartPause
	first := true
	for {
		began := time.Now()
		cmd, err := p.spawn()
		if first {
			first = false
			started <- err
			if err != nil {
				return
			}
		}
		if cmd != nil {
			err = cmd.Wait()
			if err == nil {
				err = errors.New("exit status 0")
			}
		}
		p.mu.Lock()
		p.cmd = nil
		stopping, armed, pid := p.stopping, p.armed, p.pid
		if !stopping && !armed {
			p.firstExit <- err
		}
		p.mu.Unlock()
		if stopping || !armed {
			return
		}
		if time.Since(began) > gcsStableAfter {
			pause = gcsRestartPause
		}
		p.note("the control store (pid %d) exited unexpectedly (%v); restarting it in %v", pid, err, pause)
		select {
		case <-p.stop:
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, gcsRestartMaxPause)
	}
}

// spawn starts one control store process and records its pid.
func (p *gcsProc) spawn() (*exec.Cmd, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil, errGCSStopping
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.note("cannot start the control store: %v", err)
		return nil, fmt.Errorf("node: start the control store: %w", err)
	}
	p.cmd, p.pid = cmd, cmd.Process.Pid
	if err := writeFileAtomic(p.pidPath, []byte(strconv.Itoa(p.pid)+"\n")); err != nil {
		p.note("cannot record the control store's pid: %v", err)
	}
	p.note("started the control store at %s, pid %d", p.addr, p.pid)
	return cmd, nil
}

// note writes one of the head's messages about its control store to the
// control store's log and to Config.Log.
func (p *gcsProc) note(format string, args ...any) {
	line := fmt.Sprintf("%s rayo: %s\n", time.Now().Format("2006-01-02 15:04:05.000"), fmt.Sprintf(format, args...))
	_, _ = io.WriteString(p.log, line)
	if p.notes != nil {
		_, _ = io.WriteString(p.notes, line)
	}
}

// close stops the control store: SIGTERM, then SIGKILL if it has not
// exited within gcsStopTimeout. It returns once the supervisor is done.
func (p *gcsProc) close() error {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.stopping = true
	cmd := p.cmd
	p.mu.Unlock()
	close(p.stop)
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(gcsStopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		if cmd != nil {
			_ = cmd.Process.Kill()
		}
		<-p.done
	}
	if err := os.Remove(p.pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}
