package raylet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// A raylet in a cluster of several nodes places each lease request: here,
// or on another node (a spillback the owner follows), from the cluster's
// resource view that the control store returns to every heartbeat.

// Strategies a lease request may name.
const (
	StrategyDefault = ""
	StrategySpread  = "SPREAD"
)

// Cluster is what a raylet needs from the control store of a cluster of
// several nodes; the node package provides it.
type Cluster interface {
	// StartJob makes a driver's job known cluster-wide, its executable
	// uploaded (once per content hash).
	StartJob(ctx context.Context, info *pb.JobInfo) error
	// EndJob tells the cluster a job's driver is gone, and how: status
	// SUCCEEDED or FAILED, with a message (see pb.JobRequest).
	EndJob(end *pb.JobRequest)
	// FetchJob returns a job started on another node, and the path of its
	// executable on this one (downloaded once, then cached).
	FetchJob(ctx context.Context, id string) (*pb.JobInfo, string, error)
	RegisterActorName(ctx context.Context, a *pb.ActorName) error
	LookupActorName(ctx context.Context, namespace, name string) (*pb.ActorName, error)
	ActorAlive(actorID []byte, workerAddr string)
	ActorGone(actorID []byte)
	// ReportEvents passes task and actor events on to the control store.
	ReportEvents(b *pb.StateEvents)
	// ListState asks the control store for tasks (rpc.MListTasks) or
	// actors (rpc.MListActors).
	ListState(ctx context.Context, m rpc.Method, q *pb.StateQuery) (*pb.StateList, error)
	// PlacementGroup passes a placement group request to the control store.
	PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error)
}

// placeLocked's answers for a request it cannot place now: errWaitView,
// for one that waits for the next cluster view; errGroupMissing, for one in
// a placement group whose bundle no node it knows holds (the owner waits
// for the group, then asks again); an infeasible, for one no node can ever
// run (its text goes to the owner).
var (
	errWaitView     = errors.New("raylet: the request waits for the next cluster view")
	errGroupMissing = errors.New("raylet: no node holds the request's placement group bundle")
)

// infeasible says why no node can ever run a request.
type infeasible string

func (e infeasible) Error() string { return string(e) }

// peerNode is another node as the last cluster view showed it.
type peerNode struct {
	name  string // as node affinity names it (see NodeName)
	addr  string
	total map[string]float64
	avail map[string]float64 // less what this raylet sent there since
}

// SetClusterView takes the control store's view of the cluster: the other
// nodes and what they have free, and the jobs that ended.
func (r *Raylet) SetClusterView(v *pb.ClusterView) {
	var after []func()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	peers := make([]*peerNode, 0, len(v.Nodes))
	var drainingPeers []string
	for _, n := range v.Nodes {
		if string(n.NodeId) == string(r.nodeID[:]) {
			r.viewOfSelfLocked(n, &after)
			continue
		}
		if n.State == StateDraining && n.Address != "" {
			drainingPeers = append(drainingPeers, n.Address) // no new work, but its death is news
			continue
		}
		if n.State != "ALIVE" || n.Address == "" {
			continue
		}
		nid, err := ids.NodeIDFrom(n.NodeId)
		if err != nil {
			continue
		}
		peers = append(peers, &peerNode{name: nid.Name(), addr: n.Address, total: placement.ResourceMap(n.Resources), avail: placement.ResourceMap(n.Available)})
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].addr < peers[j].addr })
	if dead := r.newlyDeadLocked(v); len(dead.Nodes) > 0 {
		conns := r.ownerConnsLocked()
		after = append(after, func() {
			for _, c := range conns {
				_ = rpc.Notify(c, rpc.NodesDead, dead)
			}
		})
	}
	r.peers = peers
	r.drainingPeers = drainingPeers
	r.noteDeadLocked(v)
	r.setLaunchableLocked(v)
	waiting := append(r.viewWait, r.awaitNode...)
	r.viewWait, r.awaitNode = nil, nil
	for _, w := range waiting {
		w := w
		after = append(after, func() { r.placeRequest(w.req, w.owner, w.cb, true) })
	}
	for _, id := range v.EndedJobs {
		if j := r.jobs[id]; j != nil && j.remote {
			r.endJobLocked(j)
		}
	}
	r.rebalanceLocked(&after)
	r.grantLocked(&after)
	r.mu.Unlock()
	run(after)
}

func fits(m map[string]float64, res []*pb.Resource) bool {
	for _, x := range res {
		if m[x.Name] < x.Quantity-1e-9 {
			return false
		}
	}
	return true
}

func take(m map[string]float64, res []*pb.Resource) {
	for _, x := range res {
		m[x.Name] -= x.Quantity
	}
}

// freeAfterPendingLocked is what this node has free once the requests
// already queued here are granted.
func (r *Raylet) freeAfterPendingLocked() map[string]float64 {
	m := make(map[string]float64, len(r.avail))
	for k, v := range r.avail {
		m[k] = v
	}
	for _, p := range r.pending {
		take(m, p.res)
	}
	return m
}

// placeLocked decides where a lease request runs: here (""), on the node
// whose raylet listens at spill, or not now (err: errWaitView,
// errGroupMissing, or an infeasible).
//
// A request naming a node this raylet does not know waits for the next
// cluster view (final is false until then).
func (r *Raylet) placeLocked(req *pb.RequestLease, final bool) (spill string, err error) {
	res := req.Resources
	if r.draining {
		return r.placeDrainingLocked(req)
	}
	local := fits(r.total, res)
	if len(req.PlacementGroup) > 0 && !local {
		known := false
		for _, p := range r.peers {
			known = known || fits(p.total, res)
		}
		switch {
		case r.alone || req.Spilled:
			return "", errGroupMissing
		case !known && !final:
			return "", errWaitView // committed since the last view, perhaps
		case !known:
			return "", errGroupMissing
		}
	}
	if r.alone || req.Spilled {
		if !local {
			return "", infeasible(fmt.Sprintf("task needs %s but this cluster has %s", describeRes(res), describe(r.total)))
		}
		return "", nil
	}
	self := r.TCPAddr()
	free := r.freeAfterPendingLocked()
	if len(req.AffinityNode) > 0 {
		p := r.peerByName(string(req.AffinityNode))
		if p == nil && string(req.AffinityNode) != r.cfg.NodeName && !final {
			return "", errWaitView // a node that joined since the last view, perhaps
		}
		switch {
		case string(req.AffinityNode) == r.cfg.NodeName && local:
			return "", nil
		case p != nil && fits(p.total, res):
			take(p.avail, res)
			return p.addr, nil
		case !req.AffinitySoft:
			return "", infeasible(fmt.Sprintf("node affinity: node %s is not alive or lacks %s", req.AffinityNode, describeRes(res)))
		}
	}
	if req.Strategy == StrategySpread {
		if addr, ok := r.spreadLocked(res, local, free); ok {
			return addr, nil
		}
	}
	if req.PreferredNode != "" && req.PreferredNode != self {
		// Locality: where most of the arguments' bytes are (objects of
		// 100 KiB and more), waiting there for room rather than moving them.
		for _, p := range r.peers {
			if p.addr == req.PreferredNode && fits(p.total, res) {
				take(p.avail, res)
				return p.addr, nil
			}
		}
	}
	if local && fits(free, res) {
		return "", nil
	}
	if p := r.roomiestLocked(res, true); p != nil {
		take(p.avail, res)
		return p.addr, nil
	}
	if local {
		return "", nil // wait here for room
	}
	if p := r.roomiestLocked(res, false); p != nil {
		return p.addr, nil // wait there
	}
	if r.launchableLocked(res) {
		return "", errAwaitNode
	}
	return "", infeasible(fmt.Sprintf("no node in the cluster can run it: it needs %s; the nodes have %s", describeRes(res), r.describeClusterLocked()))
}

// spreadLocked is where SPREAD puts a request: the next, round robin, of
// the nodes (this one: "") with room for it now, or of those that fit it
// at all; ok is false when none does.
func (r *Raylet) spreadLocked(res []*pb.Resource, local bool, free map[string]float64) (addr string, ok bool) {
	type cand struct {
		addr  string
		avail map[string]float64
	}
	var all, open []cand
	if local {
		all = append(all, cand{"", free})
	}
	for _, p := range r.peers {
		if fits(p.total, res) {
			all = append(all, cand{p.addr, p.avail})
		}
	}
	for _, c := range all {
		if fits(c.avail, res) {
			open = append(open, c)
		}
	}
	if len(open) == 0 {
		open = all
	}
	if len(open) > 0 {
		c := open[r.spreadNext%len(open)]
		r.spreadNext++
		if c.addr != "" {
			take(c.avail, res)
		}
		return c.addr, true
	}
	return "", false
}

// roomiestLocked is the other node with the most CPU free that fits res
// now (or, when !now, ever).
func (r *Raylet) roomiestLocked(res []*pb.Resource, now bool) *peerNode {
	var best *peerNode
	for _, p := range r.peers {
		m := p.total
		if now {
			m = p.avail
		}
		if fits(m, res) && (best == nil || p.avail[CPU] > best.avail[CPU]) {
			best = p
		}
	}
	return best
}

func (r *Raylet) peerByName(name string) *peerNode {
	for _, p := range r.peers {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (r *Raylet) describeClusterLocked() string {
	s := describe(r.total)
	for _, p := range r.peers {
		s += ", " + describe(p.total)
	}
	return s
}

func describeRes(res []*pb.Resource) string {
	m := map[string]float64{}
	for _, x := range res {
		m[x.Name] += x.Quantity
	}
	return describe(m)
}

// spilledStay is how long a request spilled here waits before it may move
// on again: a view's free resources can be stale, so a request may have
// been sent to a node that filled meanwhile, and it must not stay there
// while another node has room (an autoscaled node joining, say); the
// pause keeps two nodes from passing it back and forth on stale views.
const spilledStay = time.Second

// rebalanceLocked sends waiting requests that have no room here to other
// nodes that have room now.
func (r *Raylet) rebalanceLocked(after *[]func()) {
	if r.alone || len(r.peers) == 0 {
		return
	}
	free := make(map[string]float64, len(r.avail))
	for k, v := range r.avail {
		free[k] = v
	}
	kept := r.pending[:0]
	for _, p := range r.pending {
		if fits(free, p.res) || p.req.Spilled && time.Since(p.at) < spilledStay || len(p.req.AffinityNode) > 0 || p.req.Dedicated && p.req.Detached {
			take(free, p.res)
			kept = append(kept, p)
			continue
		}
		peer := r.roomiestLocked(p.res, true)
		if peer == nil {
			kept = append(kept, p)
			continue
		}
		take(peer.avail, p.res)
		cb, addr := p.cb, peer.addr
		*after = append(*after, func() { cb(&pb.LeaseReply{SpillTo: addr}, nil) })
	}
	for i := len(kept); i < len(r.pending); i++ {
		r.pending[i] = nil
	}
	r.pending = kept
}

// loadJobLocked fetches a job started on another node, then serves the
// requests that wait for it.
func (r *Raylet) loadJobLocked(id string, req *leaseReq) {
	if w, ok := r.jobWait[id]; ok {
		r.jobWait[id] = append(w, req)
		return
	}
	r.jobWait[id] = []*leaseReq{req}
	r.procs.Add(1)
	go func() {
		defer r.procs.Done()
		ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
		defer cancel()
		info, exe, err := r.cfg.Cluster.FetchJob(ctx, id)
		var conn *rpc.Conn
		if err == nil && info.LogToDriver && info.DriverAddr != "" {
			// The driver shows its workers' output, wherever they run.
			conn, _ = rpc.DialEndpoint(ctx, info.DriverAddr, r.cfg.NodeName, r.jobToken(id), nil)
		}
		var after []func()
		r.mu.Lock()
		waiting := r.jobWait[id]
		delete(r.jobWait, id)
		if err == nil && !r.closed && r.jobs[id] == nil {
			r.jobs[id] = &job{id: id, exe: exe, args: info.Args, env: info.Env, conn: conn, logs: conn != nil, remote: true}
			r.log.Info("job loaded", "job", id, "exe", exe)
		} else if conn != nil {
			defer conn.Close()
		}
		for _, w := range waiting {
			if err != nil {
				cb, msg := w.cb, fmt.Sprintf("cannot get job %s's executable: %v", id, err)
				after = append(after, func() { cb(&pb.LeaseReply{Failure: msg}, nil) })
				continue
			}
			r.pending = append(r.pending, w)
		}
		r.grantLocked(&after)
		r.mu.Unlock()
		run(after)
	}()
}

// newlyDeadLocked lists the nodes of the last view that v declares dead.
func (r *Raylet) newlyDeadLocked(v *pb.ClusterView) *pb.NodeList {
	out := &pb.NodeList{}
	for _, n := range v.Nodes {
		if n.State != "DEAD" {
			continue
		}
		known := slices.Contains(r.drainingPeers, n.Address)
		for _, p := range r.peers {
			known = known || p.addr == n.Address
		}
		if known {
			out.Nodes = append(out.Nodes, &pb.NodeInfo{NodeId: n.NodeId, Address: n.Address, State: n.State, DeathReason: n.DeathReason})
		}
	}
	return out
}

// ownerConnsLocked is every process of this node that may own tasks and
// objects: its drivers and its workers.
func (r *Raylet) ownerConnsLocked() []*rpc.Conn {
	var out []*rpc.Conn
	for _, j := range r.jobs {
		if !j.remote && j.conn != nil {
			out = append(out, j.conn)
		}
	}
	for _, w := range r.workers {
		if !w.dead && w.conn != nil {
			out = append(out, w.conn)
		}
	}
	return out
}
