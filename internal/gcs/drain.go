package gcs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// StateDraining is a node being drained (rayo drain): its raylet grants no
// new leases and the other nodes send it no work; it exits once its
// running work ends or the drain's deadline passes.
const StateDraining = "DRAINING"

// DrainedReason is the death reason of a node that exited after a drain.
const DrainedReason = "drained (rayo drain): it exited after its work ended"

// DefaultDrainDeadline is how long a drained node's running work may take
// when the request gives no deadline.
const DefaultDrainDeadline = 10 * time.Minute

// The drain requests the control store refuses.
var (
	ErrDrainUnknown  = errors.New("gcs: drain: no such node")
	ErrDrainHead     = errors.New("gcs: drain: draining the head node is not supported")
	ErrDrainAgain    = errors.New("gcs: drain: the node is already draining")
	ErrDrainDead     = errors.New("gcs: drain: the node is dead")
	ErrDrainDeadline = errors.New("gcs: drain: the deadline must not be negative")
)

// drain marks a node DRAINING with its deadline and tells every node, its
// own raylet included, through the cluster view.
func (s *Server) drain(req *pb.DrainNode) (*pb.NodeInfo, error) {
	id, err := ids.NodeIDFrom(req.NodeId)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDrainUnknown, err)
	}
	if req.DeadlineMs < 0 {
		return nil, fmt.Errorf("%w (got %d ms)", ErrDrainDeadline, req.DeadlineMs)
	}
	deadline := time.Duration(req.DeadlineMs) * time.Millisecond
	if deadline == 0 {
		deadline = DefaultDrainDeadline
	}
	s.wmu.Lock()
	s.mu.Lock()
	n := s.nodes[id]
	switch {
	case n == nil:
		err = fmt.Errorf("%w %s", ErrDrainUnknown, id)
	case n.Head:
		err = ErrDrainHead
	case n.State == StateDraining:
		err = ErrDrainAgain
	case n.State != StateAlive:
		err = fmt.Errorf("%w (%s)", ErrDrainDead, n.DeathReason)
	}
	if err != nil {
		s.mu.Unlock()
		s.wmu.Unlock()
		return nil, err
	}
	n.State = StateDraining
	n.DrainDeadlineUnixMs = s.cfg.Now().Add(deadline).UnixMilli()
	rec := proto.Clone(n).(*pb.NodeInfo)
	s.mu.Unlock()
	_ = s.save(TableNodes, id.String(), rec) // a restarted control store sees it alive, at worst
	s.wmu.Unlock()
	s.publish()
	return rec, nil
}

// serveDrain answers DrainNode.
func (s *Server) serveDrain(_ context.Context, req *pb.DrainNode) (*pb.NodeInfo, error) {
	return s.drain(req)
}
