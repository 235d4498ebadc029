package core

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// An owner is named by its endpoint (see rpc.Endpoint): its Unix socket,
// and in a cluster its TCP address and node. A worker's socket is
// w-PID.sock in its node's session folder; a driver's is driver.sock in a
// folder named s-PID-... (an embedded cluster) or job-PID-... (a driver
// that joined a cluster). When the owner cannot be reached, the borrower
// reads from its endpoint which process died, and where.

// ownerProcess describes the process at endpoint ep: whether a worker or a
// driver, its pid (0 when the endpoint does not say), and its node ("" when
// the endpoint names none: this node).
func ownerProcess(ep string) (kind string, pid int, node string) {
	unix, _, node := rpc.SplitEndpoint(ep)
	base := filepath.Base(unix)
	kind = "process"
	switch {
	case strings.HasPrefix(base, "w-") && strings.HasSuffix(base, ".sock"):
		kind = "worker"
		pid, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(base, "w-"), ".sock"))
	case base == "driver.sock":
		kind = "driver"
		dir := filepath.Base(filepath.Dir(unix))
		for _, p := range []string{"s-", "job-"} {
			if rest, ok := strings.CutPrefix(dir, p); ok {
				n, _, _ := strings.Cut(rest, "-")
				pid, _ = strconv.Atoi(n)
			}
		}
	}
	return kind, pid, node
}

// ownerDied is the error of borrowed object id whose owner, at endpoint
// owner, could not be reached (cause): it names the object's task, the
// owner's pid and node, and says the owner died.
func (rt *Runtime) ownerDied(id ids.ObjectID, owner string, cause error) *pb.TaskError {
	kind, pid, node := ownerProcess(owner)
	if node == "" {
		node = rt.cfg.Node
	}
	who := kind
	if pid > 0 {
		who += " pid " + strconv.Itoa(pid)
	}
	if node != "" {
		who += " on node " + node
	} else {
		who += " on this node"
	}
	made := "made by Put"
	if id.Index() > 0 {
		made = fmt.Sprintf("return %d of task %x", id.Index(), id.Task())
	}
	msg := fmt.Sprintf("the owner of object %s (%s), %s, died: it cannot be reached at %s: %v",
		id, made, who, owner, cause)
	return sysErr("", KindOwnerDied, msg)
}
