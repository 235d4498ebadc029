package rayo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/worker"
)

var state struct {
	sync.Mutex // protects the fields below
	rt         *core.Runtime
	raylet     *raylet.Raylet
	session    string
}

func current() *core.Runtime {
	state.Lock()
	defer state.Unlock()
	return state.rt
}

// IsWorker reports whether this process was started by rayo as a worker.
func IsWorker() bool { return worker.IsWorker() }

// ServeWorker turns this process into a worker if rayo started it as one:
// it then serves tasks and never returns. In any other process it returns
// at once. Init calls it; call it yourself first thing in TestMain, or
// wherever code before Init must not run in workers.
func ServeWorker() {
	if !worker.IsWorker() {
		return
	}
	core.Freeze()
	_, err := worker.Start(func(rt *core.Runtime) {
		state.Lock()
		state.rt = rt
		state.Unlock()
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rayo worker:", err)
		os.Exit(2)
	}
	select {} // tasks run on the worker's own goroutines until the raylet goes
}

// Init starts rayo. With no Address (and no RAYO_ADDRESS) it starts an
// embedded cluster inside this process: the control store, a raylet with
// its shared-memory object store, and a pool of worker processes, which
// run this same executable. In a worker process Init serves tasks and never
// returns.
//
// Remote functions must be declared (at package level) before Init.
func Init(opts ...Option) error {
	ServeWorker()
	o := defaultOptions()
	o.numCPUs = float64(runtime.NumCPU())
	o.apply(opts)
	if o.address == "" {
		o.address = os.Getenv("RAYO_ADDRESS")
	}
	if o.address != "" {
		return fmt.Errorf("%w: joining a cluster at %s", ErrNotSupported, o.address)
	}
	state.Lock()
	defer state.Unlock()
	if state.rt != nil {
		return ErrAlreadyInitialized
	}
	core.Freeze()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("rayo: cannot find this executable for workers: %w", err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	pruneSessions(filepath.Join(os.TempDir(), "rayo"), keepSessions)
	session := filepath.Join(os.TempDir(), "rayo", fmt.Sprintf("s-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:])))
	rl, err := raylet.Start(raylet.Config{
		SessionDir:    session,
		NumCPUs:       o.numCPUs,
		Resources:     o.resources,
		StoreCapacity: o.storeBytes,
		WorkerExe:     exe,
		WorkerArgs:    os.Args[1:],
		LogToDriver:   o.logToDriver,
		LogOutput:     os.Stdout,
	})
	if err != nil {
		return fmt.Errorf("rayo: start raylet: %w", err)
	}
	rt, err := core.New(core.Config{
		Addr:   filepath.Join(session, "driver.sock"),
		Raylet: rl,
		Arena:  rl.Arena(),
	}, nil)
	if err != nil {
		_ = rl.Close()
		return fmt.Errorf("rayo: start driver: %w", err)
	}
	state.rt, state.raylet, state.session = rt, rl, session
	return nil
}

// Shutdown stops everything Init started: worker processes, sockets and
// the shared-memory store. Refs made before it fail with ErrShutdown.
func Shutdown() error {
	state.Lock()
	rt, rl := state.rt, state.raylet
	state.rt, state.raylet = nil, nil
	state.Unlock()
	if rt == nil {
		return nil
	}
	err := rt.Close()
	if rl != nil {
		if e := rl.Close(); err == nil {
			err = e
		}
	}
	return err
}

// SessionDir is the folder holding this cluster's sockets and worker logs.
func SessionDir() string {
	state.Lock()
	defer state.Unlock()
	return state.session
}

func debugState() string {
	state.Lock()
	defer state.Unlock()
	if state.raylet == nil {
		return ""
	}
	return state.raylet.DebugString()
}

// keepSessions is how many session folders of finished drivers Init keeps
// (for their logs); older ones are removed.
const keepSessions = 20

// pruneSessions removes the oldest session folders under root whose driver
// is no longer running, keeping the newest keep of them.
func pruneSessions(root string, keep int) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	type dead struct {
		path string
		mod  time.Time
	}
	var old []dead
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "s-%d-", &pid); err != nil || !e.IsDir() {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // its driver still runs
		}
		if info, err := e.Info(); err == nil {
			old = append(old, dead{filepath.Join(root, e.Name()), info.ModTime()})
		}
	}
	sort.Slice(old, func(i, j int) bool { return old[i].mod.After(old[j].mod) })
	for i := keep; i < len(old); i++ {
		_ = os.RemoveAll(old[i].path)
	}
}
