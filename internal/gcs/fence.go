package gcs

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Fencing. A node the control store declared DEAD stays dead: its work
// has been retried elsewhere, so whatever it still runs would run twice.
// The control store refuses its heartbeats and its registration under the
// same node ID with a *FencedError; a node that hears one (or sees itself
// DEAD in the cluster's view) stops, and may join again as a new node,
// under a new ID.

// ErrNodeDead is matched (errors.Is) by every *FencedError.
var ErrNodeDead = errors.New("gcs: the node was declared dead")

// fencedMarker is in the text of every FencedError, which is how a node
// tells the refusal from other errors once it has crossed the wire as an
// rpc.RemoteError.
const fencedMarker = "was declared DEAD by the control store"

// FencedError refuses a call from a node the control store declared dead:
// which node, when and why.
type FencedError struct {
	Node      string    // the node's ID (its name, as NodeID.Name gives it)
	At        time.Time // when it was declared dead (zero: not known here, as after a restart)
	LastHeard time.Time // its last heartbeat (zero: not known)
	Reason    string    // why, as NodeInfo.DeathReason says
}

func (e *FencedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gcs: node %s %s", e.Node, fencedMarker)
	if !e.At.IsZero() {
		fmt.Fprintf(&b, " at %s", e.At.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(&b, " (%s", e.Reason)
	if !e.LastHeard.IsZero() {
		fmt.Fprintf(&b, "; last heard from at %s", e.LastHeard.UTC().Format(time.RFC3339Nano))
	}
	b.WriteString("): it is fenced, and may only join again as a new node")
	return b.String()
}

// fencedNode is the refusal of node id, from its record n.
func fencedNode(id ids.NodeID, n *pb.NodeInfo, at time.Time) *FencedError {
	e := &FencedError{Node: id.Name(), At: at, Reason: n.DeathReason}
	if n.LastHeartbeatUnixMs > 0 {
		e.LastHeard = time.UnixMilli(n.LastHeartbeatUnixMs)
	}
	return e
}

// FencedBy is the refusal a node reads in its record n, DEAD in the
// cluster's view.
func FencedBy(n *pb.NodeInfo) *FencedError {
	id, err := ids.NodeIDFrom(n.NodeId)
	if err != nil {
		return &FencedError{Node: fmt.Sprintf("%x", n.NodeId), Reason: n.DeathReason}
	}
	return fencedNode(id, n, time.Time{})
}

// Is makes a FencedError match ErrNodeDead.
func (e *FencedError) Is(target error) bool { return target == ErrNodeDead }

// IsFenced reports whether err is the control store's refusal of a node
// it declared dead, here (*FencedError) or as a peer received it
// (*rpc.RemoteError carrying its text).
func IsFenced(err error) bool {
	if errors.Is(err, ErrNodeDead) {
		return true
	}
	var re *rpc.RemoteError
	return errors.As(err, &re) && strings.Contains(re.Msg, fencedMarker)
}

// deaths remembers when the nodes were declared dead, for FencedError
// (the store keeps the death itself, not its time), and the connections
// they had registered on, still open, which guard refuses.
type deaths struct {
	mu    sync.Mutex
	at    map[ids.NodeID]time.Time
	conns sync.Map // *rpc.Conn -> *FencedError

	lastSweep int64 // when expire last ran (Unix ms); guarded by Server.mu
}

func (d *deaths) record(id ids.NodeID, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = make(map[ids.NodeID]time.Time)
	}
	if _, ok := d.at[id]; !ok {
		d.at[id] = at
	}
}

func (d *deaths) when(id ids.NodeID) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at[id]
}

// fencedLocked returns the refusal of a call from node id if the control
// store declared it dead, or nil. mu is held.
func (s *Server) fencedLocked(id ids.NodeID) error {
	n := s.nodes[id]
	if n == nil || n.State != StateDead {
		return nil
	}
	return fencedNode(id, n, s.deaths.when(id))
}

// guard refuses every frame that comes on the connection of a node
// declared dead (a request with its FencedError; a notice, such as a
// report of events or of an actor's address, is dropped), then serves
// the others with h.
func (s *Server) guard(h rpc.Handler) rpc.Handler {
	return rpc.HandlerFunc(func(c *rpc.Conn, m rpc.Method, kind rpc.Kind, id uint64, body []byte) {
		if v, fenced := s.deaths.conns.Load(c); fenced {
			if kind == rpc.KindRequest {
				_ = c.ReplyError(id, v.(*FencedError).Error())
			}
			return
		}
		h.Handle(c, m, kind, id, body)
	})
}

// stalledLocked reports whether the control store itself stood still
// (paused, starved of CPU) since its last sweep for silent nodes, for more
// than half the health timeout: then the nodes' silence says nothing
// about them, and declaring them dead would fence a healthy cluster. It
// restarts every alive node's heartbeat clock instead. mu is held.
func (s *Server) stalledLocked(now int64) bool {
	last := s.deaths.lastSweep
	s.deaths.lastSweep = now
	if last == 0 || now-last <= s.cfg.HealthTimeout.Milliseconds()/2 {
		return false
	}
	for _, n := range s.nodes {
		if n.State == StateAlive || n.State == StateDraining {
			n.LastHeartbeatUnixMs = now
		}
	}
	return true
}
