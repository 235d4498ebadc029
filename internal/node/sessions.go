package node

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// The session folders of drivers under the state folder: s-<pid>-<id>,
// an embedded cluster's (its sockets, logs and spilled objects), and
// job-<pid>-<id>, a joined driver's (its socket only).

// KeepSessions is how many session folders of finished drivers the state
// folder keeps (for their logs); PruneSessions removes older ones.
const KeepSessions = 20

// PruneSessions removes the oldest session folders under root whose
// driver is no longer running, keeping the newest keep of them, and the
// folders of joined drivers that died without Shutdown (they hold only a
// socket).
func PruneSessions(root string, keep int) {
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
		_, serr := fmt.Sscanf(e.Name(), "s-%d-", &pid)
		_, jerr := fmt.Sscanf(e.Name(), "job-%d-", &pid)
		if serr != nil && jerr != nil || !e.IsDir() {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // its driver still runs
		}
		if jerr == nil {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
			continue
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

// JobSession makes a joined driver's job ID and its session folder under
// the state folder root (job-<pid>-<id>, which holds its socket), pruning
// those of drivers gone first.
func JobSession(root string) (jobID, session string, err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	jobID = hex.EncodeToString(rnd[:])
	PruneSessions(root, KeepSessions)
	session = filepath.Join(root, fmt.Sprintf("job-%d-%s", os.Getpid(), jobID))
	if err := os.MkdirAll(session, 0o755); err != nil {
		return "", "", fmt.Errorf("node: job session folder: %w", err)
	}
	return jobID, session, nil
}
