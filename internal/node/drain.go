package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ErrNoSuchNode is a node ID or prefix that names no node, or several.
var ErrNoSuchNode = errors.New("node: no such node")

// FindNode picks, among nodes, the one whose ID (in hex, as rayo status
// prints it) is id or starts with it. The prefix must name one node.
func FindNode(nodes []*pb.NodeInfo, id string) (*pb.NodeInfo, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if id == "" {
		return nil, fmt.Errorf("%w: give a node ID or its prefix, as rayo status prints it", ErrNoSuchNode)
	}
	if _, err := hex.DecodeString(id + strings.Repeat("0", len(id)%2)); err != nil {
		return nil, fmt.Errorf("%w: %q is not a hexadecimal node ID", ErrNoSuchNode, id)
	}
	var found []*pb.NodeInfo
	for _, n := range nodes {
		if strings.HasPrefix(hex.EncodeToString(n.NodeId), id) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: no node's ID starts with %s", ErrNoSuchNode, id)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%w: %d nodes' IDs start with %s; give more of it", ErrNoSuchNode, len(found), id)
}

// DrainNode asks the cluster's control store at address to drain the
// node whose ID is id or starts with it (see FindNode): the node takes no
// new work, its running work may take deadline (0: the control store's
// default) and then it exits. It returns the node's record, DRAINING.
func DrainNode(ctx context.Context, address, token, id string, deadline time.Duration) (*pb.NodeInfo, error) {
	if deadline < 0 {
		return nil, fmt.Errorf("node: drain deadline %v must not be negative", deadline)
	}
	nodes, err := ListNodes(ctx, address, token)
	if err != nil {
		return nil, err
	}
	n, err := FindNode(nodes, id)
	if err != nil {
		return nil, err
	}
	c, err := rpc.DialToken(ctx, "tcp:"+address, token, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster at %s: %w", address, err)
	}
	defer c.Close()
	rec := &pb.NodeInfo{}
	if err := c.Call(ctx, rpc.MDrainNode, &pb.DrainNode{NodeId: n.NodeId, DeadlineMs: deadline.Milliseconds()}, rec); err != nil {
		return nil, fmt.Errorf("drain node %x: %w", n.NodeId, err)
	}
	return rec, nil
}

// drainPoll paces WaitGone's checks.
const drainPoll = 100 * time.Millisecond

// WaitGone waits, within ctx, until the control store at address lists
// the node id as DEAD, and returns its record.
func WaitGone(ctx context.Context, address, token string, id []byte) (*pb.NodeInfo, error) {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		nodes, err := ListNodes(ctx, address, token)
		if err != nil {
			return nil, err
		}
		n, err := FindNode(nodes, hex.EncodeToString(id))
		if err != nil {
			return nil, err
		}
		if n.State == "DEAD" {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("node %x is still %s: %w", id, n.State, ctx.Err())
		case <-t.C:
		}
	}
}
