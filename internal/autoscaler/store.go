package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ControlStore is what the autoscaler reads from the cluster's control
// store, and writes to its KV.
type ControlStore interface {
	// Nodes lists the nodes, alive and dead.
	Nodes(ctx context.Context) ([]*pb.NodeInfo, error)
	// PlacementGroups lists the placement groups.
	PlacementGroups(ctx context.Context) ([]*pb.PlacementGroup, error)
	// KVGet reads a key of the KV; found is false when it is not set.
	KVGet(ctx context.Context, namespace, key string) (value []byte, found bool, err error)
	// KVPut sets a key of the KV.
	KVPut(ctx context.Context, namespace, key string, value []byte) error
}

// RPCStore is a ControlStore reached over the framed protocol at a
// control store's TCP address. It dials on first use and again after its
// connection breaks (a restarted control store).
type RPCStore struct {
	addr, token string

	mu     sync.Mutex
	conn   *rpc.Conn
	closed bool
}

// ErrClosed is a call on a closed RPCStore or Autoscaler.
var ErrClosed = errors.New("autoscaler: closed")

// NewRPCStore is a ControlStore for the control store at addr
// (HOST:PORT), presenting token.
func NewRPCStore(addr, token string) *RPCStore { return &RPCStore{addr: addr, token: token} }

func (s *RPCStore) dial(ctx context.Context) (*rpc.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.conn != nil && s.conn.Err() == nil {
		return s.conn, nil
	}
	c, err := rpc.DialToken(ctx, "tcp:"+s.addr, s.token, nil)
	if err != nil {
		return nil, fmt.Errorf("autoscaler: reach the control store at %s: %w", s.addr, err)
	}
	s.conn = c
	return c, nil
}

func (s *RPCStore) call(ctx context.Context, m rpc.Method, req, resp proto.Message) error {
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	if err := c.Call(ctx, m, req, resp); err != nil {
		return fmt.Errorf("autoscaler: control store: %w", err)
	}
	return nil
}

// Nodes lists the nodes.
func (s *RPCStore) Nodes(ctx context.Context) ([]*pb.NodeInfo, error) {
	list := &pb.NodeList{}
	if err := s.call(ctx, rpc.MListNodes, &pb.Empty{}, list); err != nil {
		return nil, err
	}
	return list.Nodes, nil
}

// PlacementGroups lists the placement groups.
func (s *RPCStore) PlacementGroups(ctx context.Context) ([]*pb.PlacementGroup, error) {
	reply := &pb.PlacementGroupReply{}
	if err := s.call(ctx, rpc.MPlacementGroup, &pb.PlacementGroupRequest{Op: "LIST"}, reply); err != nil {
		return nil, err
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("autoscaler: list placement groups: %s", reply.Error)
	}
	return reply.Groups, nil
}

// KVGet reads a key.
func (s *RPCStore) KVGet(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	reply := &pb.KVReply{}
	if err := s.call(ctx, rpc.MKVGet, &pb.KVEntry{Namespace: namespace, Key: key}, reply); err != nil {
		return nil, false, err
	}
	if reply.Error != "" {
		return nil, false, fmt.Errorf("autoscaler: read %s/%s: %s", namespace, key, reply.Error)
	}
	return reply.Value, reply.Found, nil
}

// KVPut sets a key.
func (s *RPCStore) KVPut(ctx context.Context, namespace, key string, value []byte) error {
	reply := &pb.KVReply{}
	if err := s.call(ctx, rpc.MKVPut, &pb.KVEntry{Namespace: namespace, Key: key, Value: value, Overwrite: true}, reply); err != nil {
		return err
	}
	if reply.Error != "" {
		return fmt.Errorf("autoscaler: write %s/%s: %s", namespace, key, reply.Error)
	}
	return nil
}

// Close closes the connection; later calls fail with ErrClosed.
func (s *RPCStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn != nil {
		return s.conn.Close()
	}
	return nil
}
