package gcs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Node states, as the state API and `rayo status` show them.
const (
	StateAlive = "ALIVE"
	StateDead  = "DEAD"
)

// DefaultHealthTimeout is how long a node may go without a heartbeat
// before it is declared dead.
const DefaultHealthTimeout = 5 * time.Second

// storeTimeout bounds one write to the store (a whole executable, at most).
const storeTimeout = 30 * time.Second

// Config sets up a control store server.
type Config struct {
	Token         string        // peers must present it (see rpc.RequireToken)
	HealthTimeout time.Duration // 0: DefaultHealthTimeout
	Now           func() time.Time

	// RedisAddress (HOST:PORT), when set, keeps the tables in that Redis
	// server, so that a control store restarted on it finds them again.
	// Without it they are kept in memory.
	RedisAddress  string
	RedisPassword string
	RedisPrefix   string // starts every key; "": DefaultRedisPrefix

	// Store, when set, keeps the tables instead of Redis or a fresh
	// MemoryStore; the server does not close it. It excludes RedisAddress.
	Store Store

	// MaxTaskRecords bounds the task attempts kept for the state API
	// (0: tasktable.DefaultMaxTasks).
	MaxTaskRecords int
}

// Server is the control store: the node table with health checks, the
// jobs and their executables, the named actors and a key-value store,
// served over the framed protocol. Every change to those tables is
// written to its Store before it is acknowledged, and Serve loads them
// back. (Heartbeats are not written: what they carry is renewed every
// beat, and a restarted control store restarts every node's clock.)
type Server struct {
	cfg      Config
	srv      *rpc.Server
	store    Store
	ownStore bool
	names    *Names
	state    *tasktable.Table // task and actor events, in memory only: they describe a run, not what it needs to go on
	groups   *placement.Manager

	ctx    context.Context // for store calls; cancelled by Close
	cancel context.CancelFunc

	// wmu is held through every change that is written to the store, from
	// reading the old state to applying the new one, so that the store
	// sees the changes in the order the tables do. Taken before mu.
	wmu sync.Mutex

	mu        sync.Mutex // protects the fields below
	nodes     map[ids.NodeID]*pb.NodeInfo
	conns     map[*rpc.Conn]ids.NodeID // the connection each node registered on
	nodeConn  map[ids.NodeID]*rpc.Conn // and the other way round
	closing   bool
	jobs      map[string]*pb.JobInfo
	binaries  map[string][]byte // SHA-256 hex -> executable
	touched   map[string]int64  // SHA-256 hex -> when (Unix ms) it was last stored or asked for
	partials  map[string]*partial
	useSeq    uint64 // orders the partial uploads by last use
	kv        map[kvKey][]byte
	groupPush *time.Timer // a push of the view after placement groups changed
	deaths    deaths      // when nodes were declared dead, and their connections (fence.go)

	durability durability // the store's durability (writeback.go)

	submissions map[string]*pb.JobRequest // how job submissions ended (see submissionEnded)...
	subOrder    []string                  // ...in the order they did

	changed   chan struct{} // a send wakes the publisher (capacity 1: sends coalesce)
	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// ErrStoreConfig is a Config that names two stores.
var ErrStoreConfig = errors.New("gcs: Config.Store and Config.RedisAddress exclude each other")

// Serve loads the tables from the configured store and starts a control
// store on ln. It fails, closing ln, when the store cannot be reached or
// read.
func Serve(ln net.Listener, cfg Config) (*Server, error) {
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RedisPrefix == "" {
		cfg.RedisPrefix = DefaultRedisPrefix
	}
	s := &Server{
		cfg:      cfg,
		names:    NewNames(),
		state:    tasktable.NewTable(cfg.MaxTaskRecords, 0),
		nodes:    make(map[ids.NodeID]*pb.NodeInfo),
		conns:    make(map[*rpc.Conn]ids.NodeID),
		nodeConn: make(map[ids.NodeID]*rpc.Conn),
		jobs:     make(map[string]*pb.JobInfo),
		binaries: make(map[string][]byte),
		touched:  make(map[string]int64),
		partials: make(map[string]*partial),
		kv:       make(map[kvKey][]byte),
		stop:     make(chan struct{}),

		submissions: make(map[string]*pb.JobRequest),
		changed:     make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*Server, error) {
		s.cancel()
		if s.ownStore {
			_ = s.store.Close()
		}
		_ = ln.Close()
		return nil, err
	}
	switch {
	case cfg.Store != nil && cfg.RedisAddress != "":
		return fail(ErrStoreConfig)
	case cfg.Store != nil:
		s.store = cfg.Store
	case cfg.RedisAddress != "":
		st, err := DialRedis(s.ctx, cfg.RedisAddress, cfg.RedisPassword, cfg.RedisPrefix)
		if err != nil {
			return fail(err)
		}
		s.store, s.ownStore = st, true
	default:
		s.store, s.ownStore = NewMemoryStore(), true
	}
	groups, err := s.load()
	if err != nil {
		return fail(err)
	}
	s.wmu.Lock()
	s.pruneJobsLocked()
	s.wmu.Unlock()
	s.groups = placement.NewManager(groupHost{s}, nil, groups)
	mx := s.mux()
	s.srv = rpc.NewServer(ln, func(*rpc.Conn) rpc.Handler { return s.guard(mx) }, s.connClosed)
	if cfg.Token != "" {
		s.srv.RequireToken(cfg.Token)
	}
	s.wg.Add(2)
	go s.monitor()
	go s.publisher()
	if err := s.startGuard(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("gcs: mark the store: %w", err)
	}
	return s, nil
}

// Addr is where the control store listens.
func (s *Server) Addr() net.Addr { return s.srv.Addr() }

// Close stops serving and the health checks, and closes the store the
// server opened. The nodes connected to it are not declared dead: the
// control store stopped, not they.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		if s.groupPush != nil {
			s.groupPush.Stop()
		}
		s.mu.Unlock()
		close(s.stop)
		s.cancel()
		err = s.srv.Close()
		s.groups.Close()
		s.wg.Wait()
		if s.ownStore {
			if cerr := s.store.Close(); err == nil {
				err = cerr
			}
		}
	})
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

// mux is how the control store serves its peers.
func (s *Server) mux() *rpc.Mux {
	mx := rpc.NewMux("gcs")
	rpc.HandleAsync(mx, rpc.RegisterNode, func(ctx context.Context, n *pb.NodeInfo, reply func(*pb.Status, error)) {
		if err := s.register(rpc.ConnOf(ctx), n); err != nil {
			reply(nil, err)
			return
		}
		reply(&pb.Status{}, nil) // the node hears it is registered before it hears the new view
		s.publish()
		s.groups.Kick()
	})
	rpc.HandleNotify(mx, rpc.ReportEvents, func(_ context.Context, b *pb.StateEvents) { s.reportEvents(b) })
	rpc.Handle(mx, rpc.ListTasks, func(_ context.Context, q *pb.StateQuery) (*pb.StateList, error) { return s.state.Tasks(q), nil })
	rpc.Handle(mx, rpc.ListActors, func(_ context.Context, q *pb.StateQuery) (*pb.StateList, error) { return s.state.Actors(q), nil })
	rpc.Handle(mx, rpc.Heartbeat, func(_ context.Context, hb *pb.Heartbeat) (*pb.ClusterView, error) {
		if err := s.heartbeat(hb); err != nil {
			return nil, err // fenced: a dead node stays dead
		}
		return s.view(), nil
	})
	rpc.Handle(mx, rpc.ListNodes, func(context.Context, *pb.Empty) (*pb.NodeList, error) { return &pb.NodeList{Nodes: s.Nodes()}, nil })
	rpc.HandleAsync(mx, rpc.PlacementGroup, s.placementGroup)
	rpc.Handle(mx, rpc.RegisterActorName, func(_ context.Context, a *pb.ActorName) (*pb.ActorNameReply, error) {
		return nameReply(a, s.registerName(a)), nil
	})
	rpc.Handle(mx, rpc.LookupActorName, func(_ context.Context, a *pb.ActorName) (*pb.ActorNameReply, error) {
		return nameReply(s.names.Lookup(a.Namespace, a.Name)), nil
	})
	rpc.HandleNotify(mx, rpc.ActorAlive, func(_ context.Context, a *pb.ActorName) { s.actorAlive(a.ActorId, a.WorkerAddr) })
	rpc.HandleNotify(mx, rpc.ActorGone, func(_ context.Context, a *pb.ActorName) { s.actorGone(a.ActorId) })
	rpc.Handle(mx, rpc.PutBinary, func(_ context.Context, ch *pb.BinaryChunk) (*pb.Status, error) { return s.putBinary(ch), nil })
	rpc.HandleRaw(mx, rpc.GetBinary, func(_ context.Context, g *pb.GetBinary, reply func([]byte, error)) {
		if g.Length == 0 { // whether it is here: a Status
			reply(proto.Marshal(s.hasBinary(g.Hash)))
			return
		}
		reply(s.readBinary(g))
	})
	rpc.Handle(mx, rpc.JobStarted, func(_ context.Context, j *pb.JobInfo) (*pb.Status, error) { return s.jobStarted(j), nil })
	rpc.HandleNotify(mx, rpc.JobEnded, func(_ context.Context, j *pb.JobRequest) { s.jobEnded(j) })
	rpc.Handle(mx, rpc.GetJob, func(_ context.Context, j *pb.JobRequest) (*pb.JobInfo, error) { return s.job(j.JobId) })
	rpc.Handle(mx, rpc.ListJobs, func(context.Context, *pb.Empty) (*pb.JobList, error) { return &pb.JobList{Jobs: s.Jobs()}, nil })
	rpc.Handle(mx, rpc.KVPut, s.serveKVPut)
	rpc.Handle(mx, rpc.KVGet, s.serveKVGet)
	rpc.Handle(mx, rpc.KVDel, s.serveKVDel)
	rpc.Handle(mx, rpc.KVKeys, s.serveKVKeys)
	rpc.Handle(mx, rpc.DrainNode, s.serveDrain)
	return mx
}

func nameReply(a *pb.ActorName, err error) *pb.ActorNameReply {
	if err != nil {
		return &pb.ActorNameReply{Error: err.Error()}
	}
	return &pb.ActorNameReply{Actor: a}
}

// save writes a record to the store.
func (s *Server) save(table, key string, msg proto.Message) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return fmt.Errorf("gcs: encode %s record %q: %w", table, key, err)
	}
	return s.saveRaw(table, key, b)
}

func (s *Server) saveRaw(table, key string, b []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	if err := s.store.Put(ctx, table, key, b); err != nil {
		return fmt.Errorf("gcs: save %s record %q: %w", table, key, err)
	}
	return nil
}

// erase removes a record from the store.
func (s *Server) erase(table, key string) error {
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	if err := s.store.Delete(ctx, table, key); err != nil {
		return fmt.Errorf("gcs: delete %s record %q: %w", table, key, err)
	}
	return nil
}

// ErrBadNode is a registration without the fields a node must give.
var ErrBadNode = errors.New("gcs: node registration needs a node ID and an address")

// register adds a node, or takes back one that was alive (after a
// control store restart). A node declared dead is refused: it is fenced,
// and joins again only under a new ID.
func (s *Server) register(c *rpc.Conn, n *pb.NodeInfo) error {
	id, err := ids.NodeIDFrom(n.NodeId)
	if err != nil || n.Address == "" {
		return ErrBadNode
	}
	s.mu.Lock()
	fenced := s.fencedLocked(id)
	s.mu.Unlock()
	if fenced != nil {
		return fenced
	}
	n.State, n.DeathReason = StateAlive, ""
	n.LastHeartbeatUnixMs = s.cfg.Now().UnixMilli()
	if len(n.Available) == 0 {
		n.Available = n.Resources
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	fenced = s.fencedLocked(id) // declared dead meanwhile
	s.mu.Unlock()
	if fenced != nil {
		return fenced
	}
	if err := s.save(TableNodes, id.String(), n); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.nodeConn[id]; old != nil && old != c {
		delete(s.conns, old) // its closing no longer says anything about the node
	}
	if oldID, ok := s.conns[c]; ok && oldID != id {
		delete(s.nodeConn, oldID)
	}
	s.nodes[id] = n
	s.conns[c] = id
	s.nodeConn[id] = c
	return nil
}

// heartbeat renews a node's lease on life and records what it reports;
// a node declared dead is refused (*FencedError).
func (s *Server) heartbeat(hb *pb.Heartbeat) error {
	id, err := ids.NodeIDFrom(hb.NodeId)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fencedLocked(id); err != nil {
		return err
	}
	n := s.nodes[id]
	if n == nil {
		return nil // not registered here (yet): its registration follows
	}
	n.LastHeartbeatUnixMs = s.cfg.Now().UnixMilli()
	n.Available = hb.Available
	n.Pending = hb.Pending
	n.PendingShapes = hb.PendingShapes
	if hb.DrainNote != "" && n.State == StateDraining {
		n.DrainNote = hb.DrainNote // said in its death reason
	}
	if len(hb.Total) > 0 {
		n.Resources = hb.Total // placement group bundles come and go
	}
	return nil
}

// connClosed declares a node dead as soon as its connection breaks.
func (s *Server) connClosed(c *rpc.Conn, _ error) {
	s.deaths.conns.Delete(c)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	id, ok := s.conns[c]
	delete(s.conns, c)
	if !ok || s.nodeConn[id] != c {
		s.mu.Unlock()
		return
	}
	delete(s.nodeConn, id)
	if s.closing {
		s.mu.Unlock()
		return
	}
	why := "its connection to the control store closed"
	if n := s.nodes[id]; n != nil && n.State == StateDraining {
		why = DrainedReason
		if n.DrainNote != "" {
			why += "; " + n.DrainNote // what became of its objects
		}
	}
	rec := s.markDeadLocked(id, why)
	s.mu.Unlock()
	s.saveDead(id, rec)
	s.publish()
	if rec != nil {
		s.groups.NodeDead(id.String())
	}
}

// publish tells every node, soon and once however often it is called
// meanwhile, that the node table or the ended jobs changed: the other
// nodes hear of a join or a death at once, not at their next heartbeat.
func (s *Server) publish() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// publisher pushes the cluster's view to every node after each change, off
// the paths that make the changes (a slow node cannot hold them up).
func (s *Server) publisher() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.changed:
		}
		s.pushView()
	}
}

// pushView sends the cluster's view to every node now.
func (s *Server) pushView() {
	view := s.view()
	s.mu.Lock()
	conns := make([]*rpc.Conn, 0, len(s.nodeConn))
	for _, c := range s.nodeConn {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Notify(rpc.MPublishView, view)
	}
}

// markDeadLocked declares a live node dead and returns its record to
// save, or nil. It is called with wmu and mu held.
func (s *Server) markDeadLocked(id ids.NodeID, why string) *pb.NodeInfo {
	n := s.nodes[id]
	if n == nil || (n.State != StateAlive && n.State != StateDraining) {
		return nil
	}
	n.State, n.DeathReason = StateDead, why
	// Nothing of it is free any more, and what waited there waits no
	// more: the totals count the alive nodes' resources and demand.
	n.Available, n.Pending = nil, nil
	s.deaths.record(id, s.cfg.Now())
	if c := s.nodeConn[id]; c != nil {
		s.deaths.conns.Store(c, fencedNode(id, n, s.deaths.when(id)))
	}
	return proto.Clone(n).(*pb.NodeInfo)
}

// saveDead writes a node's death, with wmu held. The node is dead whether
// or not the store hears of it; if it does not, a restarted control store
// gives the node HealthTimeout to come back.
func (s *Server) saveDead(id ids.NodeID, rec *pb.NodeInfo) {
	if rec != nil {
		_ = s.save(TableNodes, id.String(), rec)
		s.actorsOnDeadNodeLocked(id, rec)
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
			s.expire()
		}
	}
}

func (s *Server) expire() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	now := s.cfg.Now().UnixMilli()
	dead := make(map[ids.NodeID]*pb.NodeInfo)
	s.mu.Lock()
	if s.stalledLocked(now) {
		s.mu.Unlock()
		return
	}
	for id, n := range s.nodes {
		if (n.State == StateAlive || n.State == StateDraining) && now-n.LastHeartbeatUnixMs > s.cfg.HealthTimeout.Milliseconds() {
			dead[id] = s.markDeadLocked(id, fmt.Sprintf("no heartbeat for %v", s.cfg.HealthTimeout))
		}
	}
	s.mu.Unlock()
	for id, rec := range dead {
		s.saveDead(id, rec)
		if rec != nil {
			s.groups.NodeDead(id.String())
		}
	}
	if len(dead) > 0 {
		s.publish()
	}
}
