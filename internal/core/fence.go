package core

import (
	"errors"
	"fmt"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ErrNodeFenced: the node this process runs on was declared dead by the
// cluster and stopped (it was fenced). Its work was, or will be, retried
// elsewhere; this process's calls fail with it from then on.
var ErrNodeFenced = errors.New("rayo: this process's node was declared dead by the cluster (fenced)")

// KindNodeFenced is a task failed because its owner's node was fenced.
const KindNodeFenced = "node_fenced"

// NodeFencedError says which node was fenced and why. It matches
// ErrNodeFenced, and ErrShutdown: the runtime takes no more work.
type NodeFencedError struct {
	Node   string // the node's name (as rayo.NodeID gives it)
	Reason string // the cause its raylet gave
}

func (e *NodeFencedError) Error() string {
	return fmt.Sprintf("rayo: node %s, which this process runs on, was declared dead by the cluster and stopped (fenced); its work is retried elsewhere, and this process can run no more: %s", e.Node, e.Reason)
}

// Is makes a NodeFencedError match ErrNodeFenced and ErrShutdown.
func (e *NodeFencedError) Is(target error) bool {
	return target == ErrNodeFenced || target == ErrShutdown
}

// Fence stops this runtime's work because its node was fenced: whatever
// is pending fails with a *NodeFencedError (tasks with KindNodeFenced),
// and so does every later call. Close must still follow.
func (rt *Runtime) Fence(node, reason string) {
	e := &NodeFencedError{Node: node, Reason: reason}
	if !rt.fenced.CompareAndSwap(nil, e) {
		return
	}
	msg := e.Error()
	rt.stopWork(func(task string) *pb.TaskError { return sysErr(task, KindNodeFenced, msg) })
}

// errShutdown is what a call after Close or Fence returns: ErrShutdown,
// or why the node was fenced.
func (rt *Runtime) errShutdown() error {
	if e := rt.fenced.Load(); e != nil {
		return e
	}
	return ErrShutdown
}

// selfFenced reports the reason if list, pushed by this process's own
// raylet, names this process's node: the raylet was fenced.
func (rt *Runtime) selfFenced(list *pb.NodeList) (string, bool) {
	if rt.cfg.Node == "" {
		return "", false
	}
	for _, n := range list.Nodes {
		if id, err := ids.NodeIDFrom(n.NodeId); err == nil && id.Name() == rt.cfg.Node {
			return n.DeathReason, true
		}
	}
	return "", false
}
