package gcs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The control store keeps the cluster's placement groups: a
// placement.Manager places their bundles on the nodes it knows, over the
// connection each node registered on.

// TablePlacementGroups holds the placement groups: hex ID -> PlacementGroup.
const TablePlacementGroups = "placement_groups"

// groupHost is the Manager's view of the cluster.
type groupHost struct{ s *Server }

func (h groupHost) Nodes() []placement.Node {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]placement.Node, 0, len(s.nodes))
	for id, n := range s.nodes {
		if n.State != StateAlive || s.nodeConn[id] == nil {
			continue
		}
		out = append(out, placement.Node{ID: id.String(), Addr: n.Address, Total: placement.ResourceMap(n.Resources), Avail: placement.ResourceMap(n.Available)})
	}
	return out
}

// errNodeGone is a bundle operation for a node that is not connected.
var errNodeGone = errors.New("the node is not connected to the control store")

func (h groupHost) Bundles(ctx context.Context, node string, op *pb.BundleOp) error {
	b, err := hex.DecodeString(node)
	if err != nil {
		return fmt.Errorf("gcs: node %q: %w", node, err)
	}
	id, err := ids.NodeIDFrom(b)
	if err != nil {
		return fmt.Errorf("gcs: node %q: %w", node, err)
	}
	h.s.mu.Lock()
	c := h.s.nodeConn[id]
	h.s.mu.Unlock()
	if c == nil {
		return errNodeGone
	}
	st := &pb.Status{}
	if err := c.Call(ctx, rpc.MBundles, op, st); err != nil {
		return err
	}
	if st.Error != "" {
		return errors.New(st.Error)
	}
	return nil
}

// Changed updates the nodes' resources as the bundles changed them (their
// next heartbeats say the same).
func (h groupHost) Changed(g *pb.PlacementGroup, bundles []int, added bool) {
	s := h.s
	group := hex.EncodeToString(g.PlacementGroupId)
	s.mu.Lock()
	for _, i := range bundles {
		b := g.Bundles[i]
		id, err := ids.NodeIDFrom(b.NodeId)
		n := s.nodes[id]
		if err != nil || n == nil {
			continue
		}
		base := placement.ResourceMap(b.Resources)
		extra := placement.BundleResources(base, group, i)
		total, avail := placement.ResourceMap(n.Resources), placement.ResourceMap(n.Available)
		sign := 1.0
		if !added {
			sign = -1
		}
		for k, v := range extra {
			total[k] += sign * v
			avail[k] += sign * v
		}
		for k, v := range base {
			avail[k] -= sign * v
		}
		n.Resources, n.Available = resourceList(total), resourceList(avail)
	}
	s.mu.Unlock()
}

// publishDelay gathers the placement groups made in a burst into one push
// of the view (which lists every bundle's resources).
const publishDelay = 20 * time.Millisecond

// Publish has the view pushed to every node within publishDelay. An owner
// whose task finds no bundle before the view arrives waits for the group
// and asks again.
func (h groupHost) Publish() {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.groupPush != nil {
		return
	}
	s.groupPush = time.AfterFunc(publishDelay, func() {
		s.mu.Lock()
		s.groupPush = nil
		s.mu.Unlock()
		s.publish()
	})
}

func (h groupHost) Save(g *pb.PlacementGroup) error {
	key := hex.EncodeToString(g.PlacementGroupId)
	if g.State == placement.StateRemoved {
		return h.s.erase(TablePlacementGroups, key)
	}
	return h.s.save(TablePlacementGroups, key, g)
}

// resourceList turns a map into a list, leaving out what is used up by
// a removed group (nothing left of it).
func resourceList(m map[string]float64) []*pb.Resource {
	out := make([]*pb.Resource, 0, len(m))
	for k, v := range m {
		if placement.IsGroupResource(k) && v < 1e-9 {
			continue
		}
		out = append(out, &pb.Resource{Name: k, Quantity: v})
	}
	return out
}

// placementGroup serves a placement group request, off the read loop (a
// WAIT waits, the others may write to the store).
func (s *Server) placementGroup(_ context.Context, req *pb.PlacementGroupRequest, reply func(*pb.PlacementGroupReply, error)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		reply(s.groups.Handle(s.ctx, req), nil)
	}()
}
