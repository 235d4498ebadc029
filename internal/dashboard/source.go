// Package dashboard is rayo's API server: the JSON state API under
// /api/v0/ (docs/state-api.md), Prometheus metrics at /metrics and the web
// dashboard at /. It runs on the head node of a cluster and inside an
// embedded cluster's driver, and reads the cluster's state over the same
// protocol as everything else: from the control store (or, embedded, the
// raylet that stands in for it) and from each node's raylet.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Source is where the API server reads the cluster's state.
type Source interface {
	// Nodes lists the cluster's nodes, dead ones too.
	Nodes(ctx context.Context) ([]*pb.NodeInfo, error)
	// Jobs lists the jobs.
	Jobs(ctx context.Context) ([]*pb.JobInfo, error)
	// Tasks and Actors query the state table.
	Tasks(ctx context.Context, q *pb.StateQuery) (*pb.StateList, error)
	Actors(ctx context.Context, q *pb.StateQuery) (*pb.StateList, error)
	// NodeStats, NodeObjects and ReadLog ask one node's raylet.
	NodeStats(ctx context.Context, n *pb.NodeInfo) (*pb.NodeStats, error)
	NodeObjects(ctx context.Context, n *pb.NodeInfo) ([]*pb.ObjectRecord, error)
	ReadLog(ctx context.Context, n *pb.NodeInfo, req *pb.LogRequest) ([]byte, error)
	// OwnedObjects asks an owner (a running job's driver, or a worker)
	// at its endpoint for the objects it owns, with their reference counts.
	OwnedObjects(ctx context.Context, owner string) ([]*pb.ObjectRecord, error)
	// PlacementGroups lists the placement groups, live and lately removed.
	PlacementGroups(ctx context.Context) ([]*pb.PlacementGroup, error)
}

// ErrUnreachable wraps the failure to reach the control store.
var ErrUnreachable = errors.New("dashboard: the cluster cannot be reached")

// RPCSource is a Source over rayo's protocol.
type RPCSource struct {
	control string // "tcp:HOST:PORT" of the control store, or an embedded raylet's socket path
	token   string

	mu    sync.Mutex
	conns map[string]*rpc.Conn
	done  bool
}

// NewRPCSource reads from the control store at control ("tcp:HOST:PORT",
// or the Unix socket of an embedded cluster's raylet), presenting token
// over TCP.
func NewRPCSource(control, token string) *RPCSource {
	return &RPCSource{control: control, token: token, conns: make(map[string]*rpc.Conn)}
}

// conn returns a live connection to addr (a Unix path or "tcp:HOST:PORT"),
// dialing it if needed.
func (s *RPCSource) conn(ctx context.Context, addr string) (*rpc.Conn, error) {
	return s.connAs(ctx, addr, s.token)
}

// ReaderJob is the job ID of the credential the API server presents to
// jobs' processes (owners it asks for their objects): they do not take the
// cluster token, which they cannot check and must never be shown, but take
// any job's credential that the cluster signed, with that job's role. No
// job has this ID (drivers' are hex).
const ReaderJob = "rayo-api-reader"

// connAs is conn, presenting token over TCP.
func (s *RPCSource) connAs(ctx context.Context, addr, token string) (*rpc.Conn, error) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil, rpc.ErrClosed
	}
	c := s.conns[addr]
	s.mu.Unlock()
	if c != nil && c.Err() == nil {
		return c, nil
	}
	var err error
	if strings.HasPrefix(addr, "tcp:") {
		c, err = rpc.DialToken(ctx, addr, token, nil)
	} else {
		c, err = rpc.Dial(ctx, addr, nil)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		_ = c.Close()
		return nil, rpc.ErrClosed
	}
	if old := s.conns[addr]; old != nil && old != c {
		_ = old.Close()
	}
	s.conns[addr] = c
	return c, nil
}

// call makes one request of addr.
func (s *RPCSource) call(ctx context.Context, addr string, m rpc.Method, req, resp proto.Message) error {
	c, err := s.conn(ctx, addr)
	if err != nil {
		return err
	}
	return c.Call(ctx, m, req, resp)
}

func (s *RPCSource) askControl(ctx context.Context, m rpc.Method, req, resp proto.Message) error {
	if err := s.call(ctx, s.control, m, req, resp); err != nil {
		var re *rpc.RemoteError
		if errors.As(err, &re) {
			return err
		}
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, strings.TrimPrefix(s.control, "tcp:"), err)
	}
	return nil
}

// Nodes lists the nodes.
func (s *RPCSource) Nodes(ctx context.Context) ([]*pb.NodeInfo, error) {
	l := &pb.NodeList{}
	if err := s.askControl(ctx, rpc.MListNodes, &pb.Empty{}, l); err != nil {
		return nil, err
	}
	return l.Nodes, nil
}

// Jobs lists the jobs.
func (s *RPCSource) Jobs(ctx context.Context) ([]*pb.JobInfo, error) {
	l := &pb.JobList{}
	if err := s.askControl(ctx, rpc.MListJobs, &pb.Empty{}, l); err != nil {
		return nil, err
	}
	return l.Jobs, nil
}

// Tasks queries the task table.
func (s *RPCSource) Tasks(ctx context.Context, q *pb.StateQuery) (*pb.StateList, error) {
	l := &pb.StateList{}
	if err := s.askControl(ctx, rpc.MListTasks, q, l); err != nil {
		return nil, err
	}
	return l, nil
}

// Actors queries the actor table.
func (s *RPCSource) Actors(ctx context.Context, q *pb.StateQuery) (*pb.StateList, error) {
	l := &pb.StateList{}
	if err := s.askControl(ctx, rpc.MListActors, q, l); err != nil {
		return nil, err
	}
	return l, nil
}

// PlacementGroups lists the placement groups.
func (s *RPCSource) PlacementGroups(ctx context.Context) ([]*pb.PlacementGroup, error) {
	r := &pb.PlacementGroupReply{}
	if err := s.askControl(ctx, rpc.MPlacementGroup, &pb.PlacementGroupRequest{Op: "LIST"}, r); err != nil {
		return nil, err
	}
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return r.Groups, nil
}

// rayletAddr is how to dial a node's raylet: its TCP address in a cluster,
// its socket in an embedded one.
func rayletAddr(n *pb.NodeInfo) string {
	if strings.HasPrefix(n.Address, "/") {
		return n.Address
	}
	return "tcp:" + n.Address
}

// NodeStats asks a node's raylet for its workers and usage.
func (s *RPCSource) NodeStats(ctx context.Context, n *pb.NodeInfo) (*pb.NodeStats, error) {
	st := &pb.NodeStats{}
	if err := s.call(ctx, rayletAddr(n), rpc.MNodeStats, &pb.Empty{}, st); err != nil {
		return nil, err
	}
	return st, nil
}

// NodeObjects asks a node's raylet for the objects in its store.
func (s *RPCSource) NodeObjects(ctx context.Context, n *pb.NodeInfo) ([]*pb.ObjectRecord, error) {
	l := &pb.ObjectList{}
	if err := s.call(ctx, rayletAddr(n), rpc.MListObjects, &pb.Empty{}, l); err != nil {
		return nil, err
	}
	return l.Objects, nil
}

// ReadLog reads part of a worker's log from its node's raylet.
func (s *RPCSource) ReadLog(ctx context.Context, n *pb.NodeInfo, req *pb.LogRequest) ([]byte, error) {
	c, err := s.conn(ctx, rayletAddr(n))
	if err != nil {
		return nil, err
	}
	return c.CallRaw(ctx, rpc.MReadLog, req)
}

// OwnedObjects asks an owner for the objects it owns.
func (s *RPCSource) OwnedObjects(ctx context.Context, owner string) ([]*pb.ObjectRecord, error) {
	addr := owner
	if _, tcp, _ := rpc.SplitEndpoint(addr); tcp != "" {
		addr = "tcp:" + tcp // the API server may run on another node
	}
	c, err := s.connAs(ctx, addr, pki.JobCredential(s.token, ReaderJob))
	if err != nil {
		return nil, err
	}
	l := &pb.ObjectList{}
	if err := c.Call(ctx, rpc.MListObjects, &pb.Empty{}, l); err != nil {
		return nil, err
	}
	return l.Objects, nil
}

// Close closes every connection.
func (s *RPCSource) Close() error {
	s.mu.Lock()
	conns := s.conns
	s.conns, s.done = nil, true
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}
