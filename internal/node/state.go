package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rayo-dev/rayo/internal/ids"
)

// StateDir is where this machine's rayo daemons keep their state: the
// RAYO_STATE_DIR environment variable, or rayo/ in the temporary folder.
func StateDir() string {
	if d := os.Getenv("RAYO_STATE_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "rayo")
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
// user only.
func WriteCluster(dir string, c ClusterInfo) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(c)
	tmp := clusterFile(dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, clusterFile(dir))
}

// ReadCluster reads what WriteCluster wrote.
func ReadCluster(dir string) (ClusterInfo, error) {
	var c ClusterInfo
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

// WritePID records a running daemon, for `rayo stop`.
func WritePID(dir string, pid int) error {
	if err := os.MkdirAll(daemonDir(dir), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(daemonDir(dir), fmt.Sprintf("%d.pid", pid)), []byte(strconv.Itoa(pid)), 0o644)
}

// RemovePID forgets a daemon.
func RemovePID(dir string, pid int) {
	_ = os.Remove(filepath.Join(daemonDir(dir), fmt.Sprintf("%d.pid", pid)))
}

// PIDs lists the daemons recorded on this machine.
func PIDs(dir string) []int {
	entries, _ := os.ReadDir(daemonDir(dir))
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".pid")); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Name is a node's ID as users see it (rayo.NodeID), from its raw form.
func Name(id []byte) string {
	nid, err := ids.NodeIDFrom(id)
	if err != nil {
		return ""
	}
	return nid.Name()
}
