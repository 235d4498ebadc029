package autoscaler

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// instanceView is one of the provider's instances and its node.
type instanceView struct {
	Instance
	node *pb.NodeInfo // its live node, or nil
	dead bool         // its node registered, then died; or its instance ended
}

// roundState is what one round read and what it decided so far, which
// its steps share.
type roundState struct {
	now      time.Time
	st       *Status
	nodes    []*pb.NodeInfo  // the cluster's nodes, alive or not
	views    []*instanceView // the provider's instances, with their nodes
	have     map[string]int  // node type -> instances not being terminated
	launch   map[string]int  // node type -> instances launched this round
	reserved map[string]bool // instances whose node the standing request keeps
}

// round reads the cluster and the provider, then takes the round's steps
// in order: terminate the instances whose node died or never came,
// launch for the demand and the minimums, release the nodes that stayed
// idle, and count the types' nodes into st.
func (a *Autoscaler) round(ctx context.Context, now time.Time, st *Status) error {
	nodes, err := a.cfg.Store.Nodes(ctx)
	if err != nil {
		return err
	}
	insts, err := a.cfg.Provider.Instances(ctx)
	if err != nil {
		return fmt.Errorf("autoscaler: list instances: %w", err)
	}
	// New node types that cannot be used leave the old in use, and are
	// reported once the round is done.
	typesErr := a.refreshTypes(ctx)
	groups, err := a.cfg.Store.PlacementGroups(ctx)
	if err != nil {
		return err
	}
	requested, err := a.requested(ctx)
	if err != nil {
		return err
	}
	r := &roundState{now: now, st: st, nodes: nodes}
	a.matchInstances(r, insts)
	if err := a.terminateLost(ctx, r); err != nil {
		return err
	}
	if err := a.launchForDemand(ctx, r, waitingDemand(nodes, groups), requested); err != nil {
		return err
	}
	if err := a.release(ctx, r, a.idleToRelease(r)); err != nil {
		return err
	}
	a.countTypes(r)
	return typesErr
}

// matchInstances matches the instances to their nodes by label, counts
// the instances of each type not being terminated, and forgets what the
// loop kept of instances that are gone.
func (a *Autoscaler) matchInstances(r *roundState, insts []Instance) {
	alive := map[string]*pb.NodeInfo{}
	dead := map[string]bool{}
	for _, n := range r.nodes {
		id := n.Labels[LabelInstance]
		if id == "" {
			continue
		}
		if n.State == "ALIVE" {
			alive[id] = n
		} else {
			dead[id] = true
		}
	}
	r.views = make([]*instanceView, 0, len(insts))
	r.have = map[string]int{}
	live := map[string]bool{}
	for _, in := range insts {
		v := &instanceView{Instance: in, node: alive[in.ID]}
		v.dead = v.node == nil && (dead[in.ID] || in.State == InstanceEnded)
		r.views = append(r.views, v)
		live[in.ID] = true
		if in.State != InstanceTerminating {
			r.have[in.NodeType]++
		}
	}
	for id := range a.seen {
		if !live[id] {
			delete(a.seen, id)
		}
	}
	for id := range a.idleSince {
		if !live[id] {
			delete(a.idleSince, id)
		}
	}
}

// terminateLost terminates the instances whose node died, or never came
// within the launch timeout, and lists the others still waiting for
// their node as pending launches.
func (a *Autoscaler) terminateLost(ctx context.Context, r *roundState) error {
	var gone []string
	for _, v := range r.views {
		if v.State == InstanceTerminating || v.node != nil {
			delete(a.seen, v.ID)
			continue
		}
		first := since(a.seen, v.ID, r.now)
		if v.dead || r.now.Sub(first) > a.cfg.LaunchTimeout {
			gone = append(gone, v.ID)
			r.have[v.NodeType]--
			continue
		}
		r.st.PendingLaunches = append(r.st.PendingLaunches, Launch{Instance: v.ID, NodeType: v.NodeType, SinceUnixMs: first.UnixMilli()})
	}
	if len(gone) > 0 {
		a.log.Info("terminating instances whose node died or never registered", "instances", gone)
		if err := a.cfg.Provider.Terminate(ctx, gone); err != nil {
			return fmt.Errorf("autoscaler: terminate %v: %w", gone, err)
		}
	}
	return nil
}

// waitingDemand is what waits: the shapes waiting on the live nodes, and
// the bundles of placement groups being placed that have no node yet.
func waitingDemand(nodes []*pb.NodeInfo, groups []*pb.PlacementGroup) []Shape {
	var waiting []Shape
	for _, n := range nodes {
		if n.State != "ALIVE" {
			continue
		}
		for _, d := range n.PendingShapes {
			for i := int32(0); i < d.Count; i++ {
				waiting = append(waiting, shapeOf(d.Shape))
			}
		}
	}
	for _, g := range groups {
		if g.State != "PENDING" && g.State != "RESCHEDULING" {
			continue
		}
		for _, b := range g.Bundles {
			if len(b.NodeId) == 0 {
				waiting = append(waiting, shapeOf(b.Resources))
			}
		}
	}
	return waiting
}

// capacity is what the nodes there are, and those coming, can take.
// What is waiting may fit what is free (the raylets have not placed it
// yet) or the nodes being launched; the standing request counts against
// what the nodes have in all, busy or not.
type capacity struct {
	free  []Shape
	whole []Shape
	owner []string // the instance of each of whole's nodes ("": the head's, or one launched this round)
}

// add counts one node in.
func (c *capacity) add(inst string, free, whole Shape) {
	c.free = append(c.free, free)
	c.whole = append(c.whole, whole)
	c.owner = append(c.owner, inst)
}

// capacity is what the live nodes, and the instances launched whose
// node may still come, offer.
func (a *Autoscaler) capacity(r *roundState) *capacity {
	c := &capacity{}
	for _, n := range r.nodes {
		if n.State != "ALIVE" {
			continue
		}
		c.add(n.Labels[LabelInstance], shapeOf(n.Available), shapeOf(n.Resources))
	}
	for _, v := range r.views {
		if v.node == nil && v.State != InstanceTerminating && !v.dead && a.seen[v.ID].Add(a.cfg.LaunchTimeout).After(r.now) {
			if t, ok := a.nodeType(v.NodeType); ok {
				c.add(v.ID, Shape(t.Resources).clone(), Shape(t.Resources).clone())
			}
		}
	}
	return c
}

// keepMinimums launches what each type lacks of its minimum, and counts
// those nodes in c (they take demand too).
func (a *Autoscaler) keepMinimums(r *roundState, c *capacity) {
	for _, t := range a.types {
		for n := t.MinWorkers - r.have[t.Name]; n > 0; n-- {
			r.launch[t.Name]++
			r.have[t.Name]++
			c.add("", Shape(t.Resources).clone(), Shape(t.Resources).clone())
		}
	}
}

// packRequest packs the standing request onto what the nodes have in
// all, and returns what fits none and the instances whose node it takes
// from (they are kept however long they idle).
func (c *capacity) packRequest(requested []Shape) (unfit []Shape, reserved map[string]bool) {
	before := make([]Shape, len(c.whole))
	for i, s := range c.whole {
		before[i] = s.clone()
	}
	unfit = packInto(c.whole, requested)
	reserved = map[string]bool{}
	for i, inst := range c.owner {
		if inst != "" && !sameShape(before[i], c.whole[i]) {
			reserved[inst] = true
		}
	}
	return unfit, reserved
}

// launchForDemand keeps each type's minimum, then launches for what fits
// nowhere (waiting shapes no free room takes, the standing request no
// node's whole takes), within the types' and the cluster's maxima.
func (a *Autoscaler) launchForDemand(ctx context.Context, r *roundState, waiting, requested []Shape) error {
	c := a.capacity(r)
	r.launch = map[string]int{}
	a.keepMinimums(r, c)
	unfit := packInto(c.free, waiting)
	more, reserved := c.packRequest(requested)
	unfit = append(unfit, more...)
	r.reserved = reserved

	planned, unmet := plan(a.types, r.have, a.cfg.MaxWorkers, unfit)
	for k, n := range planned {
		r.launch[k] += n
	}
	r.st.Unmet = unmet
	names := make([]string, 0, len(r.launch))
	for k := range r.launch {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		a.log.Info("launching nodes", "node_type", k, "count", r.launch[k], "for", unfit)
		if err := a.cfg.Provider.Launch(ctx, k, r.launch[k]); err != nil {
			return fmt.Errorf("autoscaler: launch %d of %s: %w", r.launch[k], k, err)
		}
	}
	return nil
}

// idleToRelease lists the idle nodes in the status, and returns those
// idle past the timeout that their type can spare above its minimum
// (nodes the standing request keeps are not idle).
func (a *Autoscaler) idleToRelease(r *roundState) []*instanceView {
	count := map[string]int{}
	for k, v := range r.have {
		count[k] = v - r.launch[k]
	}
	var release []*instanceView
	for _, v := range r.views {
		if v.node == nil || v.State == InstanceTerminating {
			continue
		}
		if !idle(v.node) || r.reserved[v.ID] {
			delete(a.idleSince, v.ID)
			continue
		}
		idleFrom := since(a.idleSince, v.ID, r.now)
		at := idleFrom.Add(a.cfg.IdleTimeout)
		r.st.IdleNodes = append(r.st.IdleNodes, IdleNode{NodeID: fmt.Sprintf("%x", v.node.NodeId), Instance: v.ID, NodeType: v.NodeType, IdleSinceUnixMs: idleFrom.UnixMilli(), ReleaseAtUnixMs: at.UnixMilli()})
		t, _ := a.nodeType(v.NodeType)
		if !r.now.Before(at) && count[v.NodeType]+r.launch[v.NodeType] > t.MinWorkers {
			count[v.NodeType]--
			release = append(release, v)
		}
	}
	return release
}

// release drains each node (one that cannot be drained is kept for the
// next round) and terminates its instance.
func (a *Autoscaler) release(ctx context.Context, r *roundState, release []*instanceView) error {
	for _, v := range release {
		if a.cfg.Drain != nil {
			dctx, cancel := context.WithTimeout(ctx, DefaultDrainTimeout)
			err := a.cfg.Drain(dctx, v.node)
			cancel()
			if err != nil {
				a.log.Warn("cannot drain an idle node; keeping it", "instance", v.ID, "err", err)
				continue
			}
		}
		a.log.Info("releasing an idle node", "instance", v.ID, "node_type", v.NodeType, "idle_for", r.now.Sub(a.idleSince[v.ID]))
		if err := a.cfg.Provider.Terminate(ctx, []string{v.ID}); err != nil {
			return fmt.Errorf("autoscaler: terminate %s: %w", v.ID, err)
		}
		delete(a.idleSince, v.ID)
		v.State = InstanceTerminating
	}
	return nil
}

// countTypes writes the types' counts, as they are now, into the status.
func (a *Autoscaler) countTypes(r *roundState) {
	running, pending := map[string]int{}, map[string]int{}
	for _, v := range r.views {
		switch {
		case v.node != nil && v.State != InstanceTerminating:
			running[v.NodeType]++
		case v.node == nil && v.State != InstanceTerminating && !v.dead:
			pending[v.NodeType]++
		}
	}
	for _, t := range a.types {
		r.st.NodeTypes = append(r.st.NodeTypes, TypeStatus{Name: t.Name, Resources: t.Resources, Min: t.MinWorkers, Max: t.MaxWorkers, Running: running[t.Name], Pending: pending[t.Name] + r.launch[t.Name]})
	}
}

// since is when m first saw id, now if this is the first time (which m
// then records).
func since(m map[string]time.Time, id string, now time.Time) time.Time {
	t, ok := m[id]
	if !ok {
		t = now
		m[id] = now
	}
	return t
}
