package placement

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Host is where a Manager places bundles: the cluster's nodes, and the
// tables it keeps.
type Host interface {
	// Nodes lists the live nodes and what they have free.
	Nodes() []Node
	// Bundles sends op to the raylet of node (hex ID).
	Bundles(ctx context.Context, node string, op *pb.BundleOp) error
	// Changed says that bundles of g were committed on (or, when !added,
	// released from) their nodes: the host updates its view of them. The
	// manager calls it before anyone can see the group created.
	Changed(g *pb.PlacementGroup, bundles []int, added bool)
	// Publish tells the cluster of a round's changes (the host may gather
	// several rounds' into one push). An owner whose task finds no node
	// holding its bundle yet waits for the group and asks again.
	Publish()
	// Save writes g's record, or deletes it once g is removed.
	Save(g *pb.PlacementGroup) error
}

// retryEvery is how often a Manager tries again to place the groups that
// wait (resources free up without telling it).
const retryEvery = 250 * time.Millisecond

// opTimeout bounds one bundle operation on a raylet.
const opTimeout = 10 * time.Second

// maxRemoved is how many removed groups the state API still shows.
const maxRemoved = 1000

// Manager keeps the placement groups of a cluster and places their bundles.
type Manager struct {
	host Host
	log  *slog.Logger

	mu       sync.Mutex
	groups   map[string]*group // live groups by hex ID
	names    map[string]*group
	removed  []*pb.PlacementGroup // the last ones, oldest first
	releases []release            // removed bundles the loop must give back
	dead     map[string]bool      // nodes declared dead (IDs are never reused)

	saveMu sync.Mutex // held while a group's record is written, so the last write has its last state

	kick chan struct{}
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

type group struct {
	info  *pb.PlacementGroup
	id    string        // hex
	wake  chan struct{} // closed (and replaced) at each change of state
	never string        // why it can never be placed as things are (logged once)
}

// release is bundles of a removed group to give back, by node.
type release struct {
	g     *pb.PlacementGroup
	nodes map[string][]int32
}

// NewManager starts a manager placing bundles on host's nodes; groups are
// the ones a control store kept (they are placed as they were).
func NewManager(host Host, log *slog.Logger, groups []*pb.PlacementGroup) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		host:   host,
		log:    log,
		groups: make(map[string]*group),
		names:  make(map[string]*group),
		dead:   make(map[string]bool),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	for _, info := range groups {
		if info.State == StateRemoved {
			continue
		}
		g := &group{info: info, id: hex.EncodeToString(info.PlacementGroupId), wake: make(chan struct{})}
		m.groups[g.id] = g
		if info.Name != "" {
			m.names[info.Name] = g
		}
	}
	m.wg.Add(1)
	go m.loop()
	return m
}

// Close stops placing; waiters are answered with the state they have.
func (m *Manager) Close() {
	m.once.Do(func() {
		close(m.stop)
		m.wg.Wait()
	})
}

// Kick makes the manager try the waiting groups again now (resources were
// freed or a node joined).
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Errors of Handle.
var (
	ErrUnknown = errors.New("unknown placement group")
	ErrInvalid = errors.New("invalid placement group")
)

// Handle serves a request (see pb.PlacementGroupRequest). A WAIT replies
// when the group is created or removed, when timeout_ms passes, or when
// ctx ends, with the group's state then.
func (m *Manager) Handle(ctx context.Context, req *pb.PlacementGroupRequest) *pb.PlacementGroupReply {
	var (
		out []*pb.PlacementGroup
		err error
	)
	switch req.Op {
	case OpCreate:
		var g *pb.PlacementGroup
		if g, err = m.Create(req.Group); err == nil {
			out = append(out, g)
		}
	case OpWait:
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if req.TimeoutMs > 0 {
			wctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		}
		var g *pb.PlacementGroup
		g, err = m.Wait(wctx, hex.EncodeToString(req.PlacementGroupId))
		cancel()
		if g != nil {
			out, err = append(out, g), nil
		}
	case OpRemove:
		err = m.Remove(hex.EncodeToString(req.PlacementGroupId))
	case OpGet:
		var g *pb.PlacementGroup
		if g, err = m.Get(hex.EncodeToString(req.PlacementGroupId), req.Name); err == nil {
			out = append(out, g)
		}
	case OpList:
		out = m.List()
	default:
		err = fmt.Errorf("placement: unknown operation %q", req.Op)
	}
	if err != nil {
		return &pb.PlacementGroupReply{Error: err.Error()}
	}
	return &pb.PlacementGroupReply{Groups: out}
}

// Create adds a group and starts placing it; it returns the group as
// recorded (with its ID).
func (m *Manager) Create(spec *pb.PlacementGroup) (*pb.PlacementGroup, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	info := proto.Clone(spec).(*pb.PlacementGroup)
	if len(info.PlacementGroupId) == 0 {
		id := ids.NewPlacementGroupID()
		info.PlacementGroupId = id[:]
	}
	if info.Strategy == "" {
		info.Strategy = Pack
	}
	for _, b := range info.Bundles {
		b.NodeId, b.NodeAddr = nil, ""
	}
	info.State, info.CreateUnixMs, info.ReadyUnixMs, info.RemoveUnixMs = StatePending, time.Now().UnixMilli(), 0, 0
	g := &group{info: info, id: hex.EncodeToString(info.PlacementGroupId), wake: make(chan struct{})}
	m.mu.Lock()
	if m.groups[g.id] != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: placement group %s exists", ErrInvalid, g.id)
	}
	if info.Name != "" && m.names[info.Name] != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: a placement group named %q exists", ErrInvalid, info.Name)
	}
	m.groups[g.id] = g
	if info.Name != "" {
		m.names[info.Name] = g
	}
	rec := proto.Clone(info).(*pb.PlacementGroup)
	m.mu.Unlock()
	if err := m.persist(g); err != nil {
		m.mu.Lock()
		delete(m.groups, g.id)
		if info.Name != "" {
			delete(m.names, info.Name)
		}
		m.mu.Unlock()
		return nil, err
	}
	m.Kick()
	return rec, nil
}

func validate(g *pb.PlacementGroup) error {
	if g == nil || len(g.Bundles) == 0 {
		return fmt.Errorf("%w: it needs at least one bundle", ErrInvalid)
	}
	switch g.Strategy {
	case "", Pack, Spread, StrictPack, StrictSpread:
	default:
		return fmt.Errorf("%w: unknown strategy %q (want PACK, SPREAD, STRICT_PACK or STRICT_SPREAD)", ErrInvalid, g.Strategy)
	}
	for i, b := range g.Bundles {
		if len(b.Resources) == 0 {
			return fmt.Errorf("%w: bundle %d is empty", ErrInvalid, i)
		}
		for _, r := range b.Resources {
			switch {
			case r.Name == "":
				return fmt.Errorf("%w: bundle %d names a resource \"\"", ErrInvalid, i)
			case IsGroupResource(r.Name):
				return fmt.Errorf("%w: bundle %d asks for %s, a placement group's resource", ErrInvalid, i, r.Name)
			case !(r.Quantity > 0):
				return fmt.Errorf("%w: bundle %d asks for %g of %s", ErrInvalid, i, r.Quantity, r.Name)
			}
		}
	}
	return nil
}

// Wait returns the group once it is created or removed, or, when ctx ends
// first, as it is then (with ctx's error).
func (m *Manager) Wait(ctx context.Context, id string) (*pb.PlacementGroup, error) {
	for {
		m.mu.Lock()
		g := m.groups[id]
		if g == nil {
			m.mu.Unlock()
			if info := m.removedGroup(id); info != nil {
				return info, nil
			}
			return nil, fmt.Errorf("%w %s", ErrUnknown, id)
		}
		info, wake := proto.Clone(g.info).(*pb.PlacementGroup), g.wake
		m.mu.Unlock()
		if info.State == StateCreated {
			return info, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			m.mu.Lock()
			if m.groups[id] == g {
				info = proto.Clone(g.info).(*pb.PlacementGroup) // with its latest reason
			}
			m.mu.Unlock()
			return info, ctx.Err()
		case <-m.stop:
			return info, nil
		}
	}
}

func (m *Manager) removedGroup(id string) *pb.PlacementGroup {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.removed) - 1; i >= 0; i-- {
		if hex.EncodeToString(m.removed[i].PlacementGroupId) == id {
			return proto.Clone(m.removed[i]).(*pb.PlacementGroup)
		}
	}
	return nil
}

// Get finds a group by hex ID, or by name when name is set.
func (m *Manager) Get(id, name string) (*pb.PlacementGroup, error) {
	m.mu.Lock()
	g := m.groups[id]
	if name != "" {
		g = m.names[name]
	}
	if g != nil {
		defer m.mu.Unlock()
		return proto.Clone(g.info).(*pb.PlacementGroup), nil
	}
	m.mu.Unlock()
	if name != "" {
		return nil, fmt.Errorf("%w named %q", ErrUnknown, name)
	}
	if info := m.removedGroup(id); info != nil {
		return info, nil
	}
	return nil, fmt.Errorf("%w %s", ErrUnknown, id)
}

// List returns every live group, and the last removed ones, oldest first.
func (m *Manager) List() []*pb.PlacementGroup {
	m.mu.Lock()
	out := make([]*pb.PlacementGroup, 0, len(m.groups)+len(m.removed))
	for _, g := range m.removed {
		out = append(out, proto.Clone(g).(*pb.PlacementGroup))
	}
	for _, g := range m.groups {
		out = append(out, proto.Clone(g.info).(*pb.PlacementGroup))
	}
	m.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreateUnixMs < out[j].CreateUnixMs })
	return out
}

// Remove removes a group: its bundles are given back (the workers using
// them are stopped) and tasks waiting for it fail. Removing a removed
// group does nothing.
func (m *Manager) Remove(id string) error {
	m.mu.Lock()
	g := m.groups[id]
	if g == nil {
		m.mu.Unlock()
		if m.removedGroup(id) != nil {
			return nil
		}
		return fmt.Errorf("%w %s", ErrUnknown, id)
	}
	m.removeLocked(g)
	m.mu.Unlock()
	m.changed(g)
	return nil
}

// changed writes the groups' records and has the loop act on them.
func (m *Manager) changed(gs ...*group) {
	for _, g := range gs {
		_ = m.persist(g)
	}
	if len(gs) > 0 {
		m.Kick()
	}
}

// removeLocked marks g removed and queues its placed bundles for release.
func (m *Manager) removeLocked(g *group) {
	delete(m.groups, g.id)
	if g.info.Name != "" && m.names[g.info.Name] == g {
		delete(m.names, g.info.Name)
	}
	rel := release{g: proto.Clone(g.info).(*pb.PlacementGroup), nodes: map[string][]int32{}}
	for i, b := range g.info.Bundles {
		if len(b.NodeId) > 0 {
			node := hex.EncodeToString(b.NodeId)
			rel.nodes[node] = append(rel.nodes[node], int32(i))
		}
	}
	if len(rel.nodes) > 0 {
		m.releases = append(m.releases, rel)
	}
	g.info.State, g.info.RemoveUnixMs, g.info.Reason = StateRemoved, time.Now().UnixMilli(), ""
	m.removed = append(m.removed, g.info)
	if len(m.removed) > maxRemoved {
		m.removed[0] = nil
		m.removed = m.removed[1:]
	}
	m.wakeLocked(g)
}

// persist writes g's record as it is now.
func (m *Manager) persist(g *group) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	rec := proto.Clone(g.info).(*pb.PlacementGroup)
	m.mu.Unlock()
	return m.host.Save(rec)
}

func (m *Manager) wakeLocked(g *group) {
	close(g.wake)
	g.wake = make(chan struct{})
}

// NodeDead places again the bundles that were on node (hex ID).
func (m *Manager) NodeDead(node string) {
	var recs []*group
	m.mu.Lock()
	m.dead[node] = true
	for _, g := range m.groups {
		lost := false
		for _, b := range g.info.Bundles {
			if hex.EncodeToString(b.NodeId) == node {
				b.NodeId, b.NodeAddr, lost = nil, "", true
			}
		}
		if lost {
			g.info.State, g.info.Reason = StateRescheduling, "" // the next round says why it waits
			m.wakeLocked(g)
			recs = append(recs, g)
		}
	}
	m.mu.Unlock()
	m.changed(recs...)
}

// JobEnded removes the groups job made, but for detached ones.
func (m *Manager) JobEnded(job string) {
	var recs []*group
	m.mu.Lock()
	for _, g := range m.groups {
		if g.info.JobId == job && !g.info.Detached {
			m.removeLocked(g)
			recs = append(recs, g)
		}
	}
	m.mu.Unlock()
	m.changed(recs...)
}

func (m *Manager) loop() {
	defer m.wg.Done()
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.kick:
		case <-t.C:
		}
		m.round()
	}
}

// round gives back removed bundles, then tries to place every waiting
// group, oldest first.
func (m *Manager) round() {
	m.mu.Lock()
	rels := m.releases
	m.releases = nil
	var todo []*group
	for _, g := range m.groups {
		if g.info.State == StatePending || g.info.State == StateRescheduling {
			todo = append(todo, g)
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.release(r.g, r.nodes)
		}()
	}
	wg.Wait()
	changed := len(rels) > 0
	if len(todo) > 0 {
		// Plan every group in order against what the nodes have free, then
		// reserve them all at once, each with its own two phases.
		sort.Slice(todo, func(i, j int) bool { return todo[i].info.CreateUnixMs < todo[j].info.CreateUnixMs })
		nodes := m.host.Nodes()
		var plans []*plan
		for _, g := range todo {
			if p := m.plan(g, nodes); p != nil {
				plans = append(plans, p)
			}
		}
		for _, p := range plans {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.ok = m.reserve(p)
			}()
		}
		wg.Wait()
		for _, p := range plans {
			if p.ok && m.finish(p, nodes) {
				changed = true
			}
		}
	}
	if changed {
		m.host.Publish()
	}
}

// plan is where a round puts a group's unplaced bundles.
type plan struct {
	g      *group
	info   *pb.PlacementGroup // as it was planned
	out    []string           // the node of each bundle
	placed []int              // the bundles placed by this plan
	byNode map[string][]int32
	ok     bool // reserved
}

// plan places g's unplaced bundles on nodes, taking what they use from
// the nodes' free resources, or records why it cannot.
func (m *Manager) plan(g *group, nodes []Node) *plan {
	m.mu.Lock()
	if m.groups[g.id] != g {
		m.mu.Unlock()
		return nil
	}
	info := proto.Clone(g.info).(*pb.PlacementGroup)
	m.mu.Unlock()
	bundles := make([]map[string]float64, len(info.Bundles))
	at := make([]string, len(info.Bundles))
	for i, b := range info.Bundles {
		bundles[i] = ResourceMap(b.Resources)
		if len(b.NodeId) > 0 {
			at[i] = hex.EncodeToString(b.NodeId)
		}
	}
	out, reason, never := Place(info.Strategy, bundles, at, nodes)
	if out == nil {
		m.setReason(g, reason, never)
		return nil
	}
	p := &plan{g: g, info: info, out: out, byNode: map[string][]int32{}}
	for i, node := range out {
		if at[i] == "" {
			p.byNode[node] = append(p.byNode[node], int32(i))
			p.placed = append(p.placed, i)
			for _, n := range nodes { // what the next group planned sees
				if n.ID == node {
					take(n.Avail, bundles[i])
				}
			}
		}
	}
	return p
}

// reserve runs the two phases of a plan: every node reserves its bundles,
// then every node makes them usable; a node that fails undoes the others.
func (m *Manager) reserve(p *plan) bool {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	prepared := map[string][]int32{}
	phases := []string{OpPrepare, OpCommit}
	if len(p.byNode) == 1 {
		phases = []string{OpReserve} // one node: it does both at once
	}
	for _, phase := range phases {
		for node, idx := range p.byNode {
			op := &pb.BundleOp{Op: phase, PlacementGroupId: p.info.PlacementGroupId, Indexes: idx}
			if phase != OpCommit {
				for _, i := range idx {
					op.Bundles = append(op.Bundles, &pb.Bundle{Resources: p.info.Bundles[i].Resources})
				}
			}
			if err := m.host.Bundles(ctx, node, op); err != nil {
				m.release(p.info, prepared)
				m.setReason(p.g, fmt.Sprintf("node %s could not %s bundles: %v", shortID(node), strings.ToLower(phase), err), false)
				return false
			}
			prepared[node] = idx
		}
	}
	return true
}

// finish records a reserved plan: the group is created (or, removed
// meanwhile, its bundles go back). It reports whether the nodes changed.
func (m *Manager) finish(p *plan, nodes []Node) bool {
	g, info := p.g, p.info
	addr := make(map[string]string, len(nodes))
	for _, n := range nodes {
		addr[n.ID] = n.Addr
	}
	m.mu.Lock()
	if m.groups[g.id] != g {
		// Removed meanwhile: give the bundles back.
		m.mu.Unlock()
		m.release(info, p.byNode)
		return false
	}
	for node := range p.byNode {
		if m.dead[node] {
			// It died while it reserved: place the bundles again.
			m.mu.Unlock()
			m.release(info, p.byNode)
			m.setReason(g, fmt.Sprintf("node %s died while it reserved bundles", shortID(node)), false)
			m.Kick()
			return false
		}
	}
	m.mu.Unlock()
	for _, i := range p.placed {
		info.Bundles[i].NodeId, _ = hex.DecodeString(p.out[i])
		info.Bundles[i].NodeAddr = addr[p.out[i]]
	}
	info.State, info.Reason, info.ReadyUnixMs = StateCreated, "", time.Now().UnixMilli()
	// The record and the cluster's view first: whoever sees the group
	// created finds its bundles on their nodes.
	m.saveMu.Lock()
	m.mu.Lock()
	live := m.groups[g.id] == g
	m.mu.Unlock()
	if live {
		_ = m.host.Save(info) // a removal from now on is written after it
	}
	m.saveMu.Unlock()
	m.host.Changed(info, p.placed, true)
	m.mu.Lock()
	if m.groups[g.id] != g {
		m.mu.Unlock()
		m.release(info, p.byNode)
		m.host.Changed(info, p.placed, false)
		return true
	}
	for _, i := range p.placed {
		b := g.info.Bundles[i]
		b.NodeId, b.NodeAddr = info.Bundles[i].NodeId, info.Bundles[i].NodeAddr
	}
	g.info.State, g.info.Reason, g.info.ReadyUnixMs, g.never = StateCreated, "", info.ReadyUnixMs, ""
	m.wakeLocked(g)
	m.mu.Unlock()
	return true
}

// release gives back bundles of g on the nodes named (and, for a removed
// group, tells the host).
func (m *Manager) release(g *pb.PlacementGroup, nodes map[string][]int32) {
	if len(nodes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var all []int
	for node, idx := range nodes {
		if err := m.host.Bundles(ctx, node, &pb.BundleOp{Op: OpRelease, PlacementGroupId: g.PlacementGroupId, Indexes: idx}); err != nil {
			m.log.Warn("placement group: cannot release bundles", "group", hex.EncodeToString(g.PlacementGroupId), "node", node, "err", err)
		}
		for _, i := range idx {
			all = append(all, int(i))
		}
	}
	if g.State == StateRemoved {
		m.host.Changed(g, all, false)
	}
}

func (m *Manager) setReason(g *group, reason string, never bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups[g.id] != g {
		return
	}
	g.info.Reason = reason
	if never && g.never != reason {
		g.never = reason
		m.log.Warn("placement group cannot be placed", "group", g.id, "name", g.info.Name, "why", reason)
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
