package gcs

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Node states, as the state API and `rayo status` show them.
const (
	StateAlive = "ALIVE"
	StateDead  = "DEAD"
)

// DefaultHealthTimeout is how long a node may go without a heartbeat
// before it is declared dead.
const DefaultHealthTimeout = 5 * time.Second

// Config sets up a control store server.
type Config struct {
	Token         string        // peers must present it (see rpc.RequireToken)
	HealthTimeout time.Duration // 0: DefaultHealthTimeout
	Now           func() time.Time
}

// Server is the control store: the node table with health checks and the
// named actors, served over the framed protocol.
type Server struct {
	cfg   Config
	srv   *rpc.Server
	names *Names

	mu    sync.Mutex // protects nodes, conns
	nodes map[ids.NodeID]*pb.NodeInfo
	conns map[*rpc.Conn]ids.NodeID // the connection each node registered on

	stop chan struct{}
	wg   sync.WaitGroup
}

// Serve starts a control store on ln.
func Serve(ln net.Listener, cfg Config) *Server {
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:   cfg,
		names: NewNames(),
		nodes: make(map[ids.NodeID]*pb.NodeInfo),
		conns: make(map[*rpc.Conn]ids.NodeID),
		stop:  make(chan struct{}),
	}
	s.srv = rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return rpc.HandlerFunc(s.handle) }, s.connClosed)
	if cfg.Token != "" {
		s.srv.RequireToken(cfg.Token)
	}
	s.wg.Add(1)
	go s.monitor()
	return s
}

// Addr is where the control store listens.
func (s *Server) Addr() net.Addr { return s.srv.Addr() }

// Close stops serving and the health checks.
func (s *Server) Close() error {
	close(s.stop)
	err := s.srv.Close()
	s.wg.Wait()
	return err
}

// Nodes lists the nodes, alive and dead, oldest first.
func (s *Server) Nodes() []*pb.NodeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pb.NodeInfo, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, proto.Clone(n).(*pb.NodeInfo))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Head != out[j].Head {
			return out[i].Head
		}
		return out[i].Address < out[j].Address
	})
	return out
}

func (s *Server) handle(c *rpc.Conn, m rpc.Method, kind rpc.Kind, id uint64, body []byte) {
	reply := func(msg proto.Message, err error) {
		if kind != rpc.KindRequest {
			return
		}
		if err != nil {
			_ = c.ReplyError(id, err.Error())
			return
		}
		_ = c.Reply(id, msg)
	}
	switch m {
	case rpc.MRegisterNode:
		n := &pb.NodeInfo{}
		if err := proto.Unmarshal(body, n); err != nil {
			reply(nil, fmt.Errorf("%w: %v", rpc.ErrCorrupt, err))
			return
		}
		reply(&pb.Status{}, s.register(c, n))
	case rpc.MHeartbeat:
		hb := &pb.Heartbeat{}
		if proto.Unmarshal(body, hb) == nil {
			s.heartbeat(hb)
		}
	case rpc.MListNodes:
		reply(&pb.NodeList{Nodes: s.Nodes()}, nil)
	case rpc.MRegisterActorName, rpc.MLookupActorName:
		a := &pb.ActorName{}
		if err := proto.Unmarshal(body, a); err != nil {
			reply(nil, fmt.Errorf("%w: %v", rpc.ErrCorrupt, err))
			return
		}
		if m == rpc.MRegisterActorName {
			err := s.names.Register(a)
			reply(nameReply(a, err), nil)
		} else {
			found, err := s.names.Lookup(a.Namespace, a.Name)
			reply(nameReply(found, err), nil)
		}
	default:
		reply(nil, fmt.Errorf("gcs: unknown method %d", m))
	}
}

func nameReply(a *pb.ActorName, err error) *pb.ActorNameReply {
	if err != nil {
		return &pb.ActorNameReply{Error: err.Error()}
	}
	return &pb.ActorNameReply{Actor: a}
}

// ErrBadNode is a registration without the fields a node must give.
var ErrBadNode = errors.New("gcs: node registration needs a node ID and an address")

func (s *Server) register(c *rpc.Conn, n *pb.NodeInfo) error {
	id, err := ids.NodeIDFrom(n.NodeId)
	if err != nil || n.Address == "" {
		return ErrBadNode
	}
	n.State = StateAlive
	n.LastHeartbeatUnixMs = s.cfg.Now().UnixMilli()
	if len(n.Available) == 0 {
		n.Available = n.Resources
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[id] = n
	s.conns[c] = id
	return nil
}

func (s *Server) heartbeat(hb *pb.Heartbeat) {
	id, err := ids.NodeIDFrom(hb.NodeId)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[id]
	if n == nil || n.State == StateDead {
		return // a dead node stays dead; it must register anew
	}
	n.LastHeartbeatUnixMs = s.cfg.Now().UnixMilli()
	n.Available = hb.Available
	n.Pending = hb.Pending
}

// connClosed declares a node dead as soon as its connection breaks.
func (s *Server) connClosed(c *rpc.Conn, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.markDeadLocked(id, "its connection to the control store closed")
	}
}

func (s *Server) markDeadLocked(id ids.NodeID, why string) {
	if n := s.nodes[id]; n != nil && n.State == StateAlive {
		n.State, n.DeathReason = StateDead, why
	}
}

// monitor declares dead the nodes whose heartbeats stopped (a network cut
// leaves the connection open but silent).
func (s *Server) monitor() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.HealthTimeout / 5)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			now := s.cfg.Now().UnixMilli()
			s.mu.Lock()
			for id, n := range s.nodes {
				if n.State == StateAlive && now-n.LastHeartbeatUnixMs > s.cfg.HealthTimeout.Milliseconds() {
					s.markDeadLocked(id, fmt.Sprintf("no heartbeat for %v", s.cfg.HealthTimeout))
				}
			}
			s.mu.Unlock()
		}
	}
}
