package autoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LocalConfig sets up a LocalProvider.
type LocalConfig struct {
	// Exe is the rayo executable the nodes run (`Exe start --address
	// ... --block`).
	Exe string
	// Address is the head's control store (HOST:PORT); Token the secret
	// the nodes join with (the join token on a TLS cluster).
	Address, Token string
	// Host is the address the nodes listen on ("": loopback).
	Host string
	// StateRoot holds each instance's state folder, StateRoot/<instance>,
	// and its output, StateRoot/<instance>.log.
	StateRoot string
	// Args are more arguments for every node (such as --tls).
	Args []string
	// Types are the node types it launches.
	Types []NodeType
	// StopTimeout is how long a stopped node has to exit after SIGTERM
	// before it is killed (0: 30 s).
	StopTimeout time.Duration
	// Log hears of nodes that exit on their own; nil discards it.
	Log *slog.Logger
}

// maxSocketPath is the longest path a Unix socket may have on Linux.
const maxSocketPath = 107

// LocalProvider launches nodes as `rayo start --address ... --block`
// processes on this machine, each with a state folder of its own and the
// labels that name its instance and node type: a cluster of several
// nodes on one machine, for development and tests, as Ray's fake
// multi-node provider. Its processes die with the process that started
// them (PR_SET_PDEATHSIG) and Close stops them.
type LocalProvider struct {
	cfg LocalConfig

	mu     sync.Mutex
	next   int
	procs  map[string]*localProc
	closed bool
	wg     sync.WaitGroup // the processes' waiters
}

type localProc struct {
	inst   Instance
	cmd    *exec.Cmd
	exited chan struct{}
}

// NewLocalProvider checks the configuration and returns the provider.
func NewLocalProvider(cfg LocalConfig) (*LocalProvider, error) {
	switch {
	case cfg.Exe == "":
		return nil, fmt.Errorf("%w: the local provider needs the rayo executable", ErrConfig)
	case cfg.Address == "":
		return nil, fmt.Errorf("%w: the local provider needs the head's address", ErrConfig)
	case cfg.StateRoot == "":
		return nil, fmt.Errorf("%w: the local provider needs a folder for its nodes' state", ErrConfig)
	}
	if err := CheckNodeTypes(cfg.Types); err != nil {
		return nil, err
	}
	for _, t := range cfg.Types {
		// A node's sockets live in its session folder below StateRoot/id,
		// and a Unix socket's path holds at most 107 bytes.
		if n := len(filepath.Join(cfg.StateRoot, t.Name+"-9999", "s-4194304-0123abcd", "w-4194304.sock")); n > maxSocketPath {
			return nil, fmt.Errorf("%w: the local provider's nodes of type %q would have socket paths of up to %d bytes below %s, more than a Unix socket's %d: use a shorter state folder (RAYO_STATE_DIR) or type name", ErrConfig, t.Name, n, cfg.StateRoot, maxSocketPath)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if err := os.MkdirAll(cfg.StateRoot, 0o700); err != nil {
		return nil, fmt.Errorf("autoscaler: local provider state folder: %w", err)
	}
	return &LocalProvider{cfg: cfg, procs: map[string]*localProc{}}, nil
}

// NodeTypes are the configured node types.
func (p *LocalProvider) NodeTypes() []NodeType { return append([]NodeType(nil), p.cfg.Types...) }

// Instances lists the processes started and not yet exited.
func (p *LocalProvider) Instances(context.Context) ([]Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Instance, 0, len(p.procs))
	for _, lp := range p.procs {
		out = append(out, lp.inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Launch starts count nodes of the named type.
func (p *LocalProvider) Launch(_ context.Context, nodeType string, count int) error {
	var t *NodeType
	for i := range p.cfg.Types {
		if p.cfg.Types[i].Name == nodeType {
			t = &p.cfg.Types[i]
		}
	}
	if t == nil {
		return fmt.Errorf("autoscaler: local provider: no node type %q", nodeType)
	}
	for range count {
		if err := p.start(*t); err != nil {
			return err
		}
	}
	return nil
}

func (p *LocalProvider) start(t NodeType) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.next++
	id := fmt.Sprintf("%s-%d", t.Name, p.next) // short: the node's sockets live below StateRoot/id
	dir := filepath.Join(p.cfg.StateRoot, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("autoscaler: state folder of %s: %w", id, err)
	}
	logf, err := os.OpenFile(dir+".log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("autoscaler: log of %s: %w", id, err)
	}
	defer logf.Close()
	args, err := localArgs(p.cfg, t, id)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.cfg.Exe, args...)
	cmd.Env = append(localEnv(os.Environ()), "RAYO_STATE_DIR="+dir, "RAYO_TOKEN="+p.cfg.Token)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("autoscaler: start node %s: %w", id, err)
	}
	lp := &localProc{inst: Instance{ID: id, NodeType: t.Name, State: InstanceRunning}, cmd: cmd, exited: make(chan struct{})}
	p.procs[id] = lp
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := cmd.Wait()
		close(lp.exited)
		p.mu.Lock()
		delete(p.procs, id)
		stopped := lp.inst.State == InstanceTerminating || p.closed
		p.mu.Unlock()
		if !stopped {
			p.cfg.Log.Warn("a node exited on its own", "instance", id, "err", err, "log", dir+".log")
		}
	}()
	return nil
}

// localArgs are the arguments of a node of type t named id.
func localArgs(cfg LocalConfig, t NodeType, id string) ([]string, error) {
	custom := map[string]float64{}
	for k, v := range t.Resources {
		if k != "CPU" && k != "GPU" {
			custom[k] = v
		}
	}
	args := []string{"start", "--address", cfg.Address, "--block",
		"--num-cpus", strconv.FormatFloat(t.Resources["CPU"], 'g', -1, 64),
		"--num-gpus", strconv.FormatFloat(t.Resources["GPU"], 'g', -1, 64),
		"--labels", LabelInstance + "=" + id + "," + LabelNodeType + "=" + t.Name,
	}
	if len(custom) > 0 {
		b, err := json.Marshal(custom)
		if err != nil {
			return nil, fmt.Errorf("autoscaler: resources of %s: %w", t.Name, err)
		}
		args = append(args, "--resources", string(b))
	}
	if cfg.Host != "" {
		args = append(args, "--host", cfg.Host)
	}
	return append(args, cfg.Args...), nil
}

// localEnv is the environment a node inherits: this one without the
// RAYO_ variables, which are the twins of rayo start's flags (the head's
// own RAYO_HEAD, RAYO_PORT...) and its secrets.
func localEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "RAYO_") {
			out = append(out, kv)
		}
	}
	return out
}

// Terminate stops the named instances with SIGTERM (a node leaves its
// cluster and exits), then SIGKILL after StopTimeout. Unknown IDs are
// ignored: they are gone already.
func (p *LocalProvider) Terminate(_ context.Context, ids []string) error {
	p.mu.Lock()
	var stop []*localProc
	for _, id := range ids {
		if lp := p.procs[id]; lp != nil && lp.inst.State != InstanceTerminating {
			lp.inst.State = InstanceTerminating
			stop = append(stop, lp)
		}
	}
	if len(stop) > 0 && !p.closed {
		p.wg.Add(len(stop))
	} else {
		stop = nil
	}
	p.mu.Unlock()
	for _, lp := range stop {
		_ = lp.cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			defer p.wg.Done()
			t := time.NewTimer(p.cfg.StopTimeout)
			defer t.Stop()
			select {
			case <-lp.exited:
			case <-t.C:
				_ = lp.cmd.Process.Kill()
			}
		}()
	}
	return nil
}

// Close stops every node it started and waits for them to exit.
func (p *LocalProvider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	procs := make([]*localProc, 0, len(p.procs))
	for _, lp := range p.procs {
		procs = append(procs, lp)
	}
	p.mu.Unlock()
	for _, lp := range procs {
		_ = lp.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.NewTimer(p.cfg.StopTimeout)
	defer deadline.Stop()
	var errs []error
	late := false
	for _, lp := range procs {
		if !late {
			select {
			case <-lp.exited:
				continue
			case <-deadline.C:
				late = true
			}
		}
		select {
		case <-lp.exited:
		default:
			_ = lp.cmd.Process.Kill()
			<-lp.exited
			errs = append(errs, fmt.Errorf("autoscaler: node %s did not stop within %v; killed", lp.inst.ID, p.cfg.StopTimeout))
		}
	}
	p.wg.Wait()
	return errors.Join(errs...)
}
