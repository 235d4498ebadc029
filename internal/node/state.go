package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rayo-dev/rayo/internal/ids"
)

// StateDir is where this user's rayo daemons and drivers on this machine
// keep their state: the RAYO_STATE_DIR environment variable, or
// rayo-<uid> in the temporary folder. Each user has a folder of their own:
// one shared by all would let another local user plant what the daemons
// trust (the cluster record, pid files, executables). $XDG_RUNTIME_DIR is
// not used: it is a small memory-backed folder that the login manager
// removes at logout, while daemons outlive logins and their sessions hold
// logs and spilled objects.
func StateDir() string {
	if d := os.Getenv("RAYO_STATE_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("rayo-%d", os.Getuid()))
}

// PrepareStateDir creates the state folder dir, private (0700), if it is
// missing, then checks it as CheckStateDir does.
func PrepareStateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("node: state folder: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("node: state folder: %w", err)
		}
	}
	return CheckStateDir(dir)
}

// CheckStateDir reports whether the state folder dir may be trusted: it
// must be a directory itself (not a symbolic link), owned by this user,
// and writable by nobody else. Anything else is refused with an error
// that names the folder and what is wrong with it, since whoever can
// write there can make rayo run their code or signal any process.
func CheckStateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("node: state folder: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("node: state folder %s is a symbolic link; refusing to use it (set RAYO_STATE_DIR to a folder of your own)", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("node: state folder %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("node: state folder %s: no owner information", dir)
	}
	if uid := os.Getuid(); int(st.Uid) != uid {
		return fmt.Errorf("node: state folder %s belongs to uid %d, not to this user (uid %d); refusing to use it (set RAYO_STATE_DIR to a folder of your own)", dir, st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("node: state folder %s is writable by others (mode %04o); refusing to use it (chmod go-w %s)", dir, perm, dir)
	}
	return nil
}

// ClusterInfo is what a local `rayo` command or driver needs to reach the
// cluster started on this machine.
type ClusterInfo struct {
	Address string `json:"address"`
	Token   string `json:"token"`
	// The head's raylet, for drivers on this machine.
	RayletSocket string `json:"raylet_socket,omitempty"`
	RayletPID    int    `json:"raylet_pid,omitempty"`
	StoreFD      int    `json:"store_fd,omitempty"`
	// The node's host, raylet TCP address and name, for drivers that serve
	// other nodes.
	Host     string `json:"host,omitempty"`
	NodeAddr string `json:"node_addr,omitempty"`
	Node     string `json:"node,omitempty"`
	// The head's API server (http://HOST:PORT), for rayo list and friends.
	Dashboard string `json:"dashboard,omitempty"`
	// TLSDir holds the node's TLS credentials, for drivers and rayo
	// commands on this machine ("": TLS is off); JoinToken, on a head,
	// is what nodes on other machines join with.
	TLSDir    string `json:"tls_dir,omitempty"`
	JoinToken string `json:"join_token,omitempty"`
}

func clusterFile(dir string) string { return filepath.Join(dir, "cluster.json") }

// WriteCluster records the head's address and token, readable by this
// user only, in the state folder dir (see PrepareStateDir).
func WriteCluster(dir string, c ClusterInfo) error {
	if err := PrepareStateDir(dir); err != nil {
		return err
	}
	b, _ := json.Marshal(c)
	return writeFileAtomic(clusterFile(dir), b)
}

// writeFileAtomic replaces path with a file holding b, readable by this
// user only, so that a reader sees the old content or the new, never part
// of it: it writes a new file of a random name, created exclusively (so it
// never follows a link someone planted), and renames it over path.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a failure; gone after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ReadCluster reads what WriteCluster wrote, from a state folder that
// CheckStateDir trusts.
func ReadCluster(dir string) (ClusterInfo, error) {
	var c ClusterInfo
	if err := CheckStateDir(dir); err != nil {
		return c, err
	}
	b, err := os.ReadFile(clusterFile(dir))
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("node: %s: %w", clusterFile(dir), err)
	}
	return c, nil
}

// RemoveCluster forgets the cluster record.
func RemoveCluster(dir string) { _ = os.Remove(clusterFile(dir)) }

// Resolve finds the cluster's address and token: the given values first,
// then RAYO_ADDRESS and RAYO_TOKEN, then the record of a head started on
// this machine.
func Resolve(address, token string) (ClusterInfo, error) {
	c := ClusterInfo{Address: address, Token: token}
	if c.Address == "" {
		c.Address = os.Getenv("RAYO_ADDRESS")
	}
	if c.Token == "" {
		c.Token = os.Getenv("RAYO_TOKEN")
	}
	if rec, err := ReadCluster(StateDir()); err == nil && (c.Address == "" || c.Address == rec.Address) {
		c.Address, c.Dashboard, c.TLSDir = rec.Address, rec.Dashboard, rec.TLSDir
		if c.Token == "" {
			c.Token = rec.Token
		}
	}
	if c.Address == "" {
		return c, errors.New("no cluster address: pass --address, set RAYO_ADDRESS, or start one here with `rayo start --head`")
	}
	return c, nil
}

func daemonDir(dir string) string { return filepath.Join(dir, "daemons") }

// WritePID records a running daemon of this process's, for `rayo stop`:
// its pid and its start time, so that a pid the system has since reused
// for another process is never taken for the daemon.
func WritePID(dir string, pid int) error {
	if err := PrepareStateDir(dir); err != nil {
		return err
	}
	if err := os.Mkdir(daemonDir(dir), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	start, err := processStart(pid)
	if err != nil {
		return err
	}
	return writeFileAtomic(pidFile(dir, pid), []byte(fmt.Sprintf("%d %d\n", pid, start)))
}

func pidFile(dir string, pid int) string {
	return filepath.Join(daemonDir(dir), fmt.Sprintf("%d.pid", pid))
}

// RemovePID forgets a daemon.
func RemovePID(dir string, pid int) { _ = os.Remove(pidFile(dir, pid)) }

// PIDs lists the daemons recorded in the state folder dir that still run:
// a recorded pid counts only if the process of that pid belongs to this
// user and started when the record says. Records that fail the check
// (the daemon is gone and the pid reused, or the record was planted) are
// removed; nothing is listed from a folder CheckStateDir refuses.
func PIDs(dir string) []int {
	if CheckStateDir(dir) != nil {
		return nil
	}
	entries, _ := os.ReadDir(daemonDir(dir))
	var pids []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".pid")
		pid, err := strconv.Atoi(name)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if daemonRuns(dir, pid) {
			pids = append(pids, pid)
		} else {
			RemovePID(dir, pid)
		}
	}
	return pids
}

// daemonRuns reports whether the record of pid in dir describes a
// process that runs now: same pid, same start time, this user's.
func daemonRuns(dir string, pid int) bool {
	b, err := os.ReadFile(pidFile(dir, pid))
	if err != nil {
		return false
	}
	var rpid int
	var start uint64
	if n, _ := fmt.Sscanf(string(b), "%d %d", &rpid, &start); n != 2 || rpid != pid {
		return false
	}
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return false
	}
	now, err := processStart(pid)
	return err == nil && now == start
}

// processStart returns when process pid started, in clock ticks since
// boot (field 22 of /proc/<pid>/stat): with the pid, it names one process
// for the life of the system.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("node: process %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("node: process %d: malformed stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 { // f[0] is field 3 (state); the start time is field 22
		return 0, fmt.Errorf("node: process %d: short stat %q", pid, b)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("node: process %d: start time: %w", pid, err)
	}
	return start, nil
}

// Name is a node's ID as users see it (rayo.NodeID), from its raw form.
func Name(id []byte) string {
	nid, err := ids.NodeIDFrom(id)
	if err != nil {
		return ""
	}
	return nid.Name()
}
