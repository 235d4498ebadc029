package testcluster

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Signal sends sig to the node's whole process group: its daemon and the
// workers it started (SIGSTOP pauses the node as a frozen machine would
// be, SIGCONT resumes it).
func (n *Node) Signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		n.c.t.Fatalf("%s: not started", n.Name)
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		n.c.t.Fatalf("%s: signal %v: %v", n.Name, sig, err)
	}
}

// PID is the node's daemon's pid.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Exited waits up to within for the daemon to end, and returns whether
// it did and how (the error of exec.Cmd.Wait).
func (n *Node) Exited(within time.Duration) (bool, error) {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-done:
	default:
		select {
		case <-done:
		case <-t.C:
			return false, nil
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return true, n.exit
}

// Group lists the live processes of the node's process group (its daemon
// and its workers), from /proc.
func (n *Node) Group() []int {
	pgid := n.PID()
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue // a zombie has ended
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}
