package rayo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// PlacementStrategy says how the bundles of a placement group spread over
// the cluster's nodes.
type PlacementStrategy string

// Placement strategies, as Ray names them.
const (
	// StrategyPack puts the bundles on as few nodes as it can.
	StrategyPack PlacementStrategy = placement.Pack
	// StrategySpread puts the bundles on as many nodes as it can.
	StrategySpread PlacementStrategy = placement.Spread
	// StrategyStrictPack puts every bundle on one node, or waits.
	StrategyStrictPack PlacementStrategy = placement.StrictPack
	// StrategyStrictSpread puts each bundle on a node of its own, or waits.
	StrategyStrictSpread PlacementStrategy = placement.StrictSpread
)

// Bundle is a set of resources reserved together on one node, such as
// Bundle{"CPU": 2}.
type Bundle map[string]float64

// PlacementGroup is a set of bundles reserved at once across the cluster
// (gang scheduling): tasks and actors placed in it with InPlacementGroup
// run on its bundles' nodes, on resources nothing else takes.
type PlacementGroup struct {
	id       []byte
	name     string
	strategy PlacementStrategy
	bundles  []Bundle
}

// NewPlacementGroup asks the cluster to reserve bundles with strategy (""
// is StrategyPack) and returns at once; Ready waits until they are
// reserved. Name names the group (see GetPlacementGroup) and Detached
// keeps it after the job that made it ends; other options are refused.
// The group is removed with its job unless detached.
func NewPlacementGroup(ctx context.Context, bundles []Bundle, strategy PlacementStrategy, opts ...Option) (*PlacementGroup, error) {
	o := defaultOptions()
	o.apply(forPlacementGroup, opts)
	if o.optErr != nil {
		return nil, o.optErr
	}
	rt := current()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	spec := &pb.PlacementGroup{Name: o.name, Strategy: string(strategy), Detached: o.detached}
	for _, b := range bundles {
		bp := &pb.Bundle{}
		names := make([]string, 0, len(b))
		for k := range b {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			bp.Resources = append(bp.Resources, &pb.Resource{Name: k, Quantity: b[k]})
		}
		spec.Bundles = append(spec.Bundles, bp)
	}
	r, err := rt.PlacementGroup(ctx, &pb.PlacementGroupRequest{Op: placement.OpCreate, Group: spec})
	if err != nil {
		return nil, fmt.Errorf("rayo: placement group: %w", err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("rayo: placement group: %s", r.Error)
	}
	if len(r.Groups) != 1 {
		return nil, fmt.Errorf("rayo: placement group: the reply names %d groups", len(r.Groups))
	}
	return groupOf(r.Groups[0]), nil
}

func groupOf(g *pb.PlacementGroup) *PlacementGroup {
	pg := &PlacementGroup{id: g.PlacementGroupId, name: g.Name, strategy: PlacementStrategy(g.Strategy)}
	for _, b := range g.Bundles {
		pg.bundles = append(pg.bundles, Bundle(placement.ResourceMap(b.Resources)))
	}
	return pg
}

// GetPlacementGroup finds a live placement group by name.
func GetPlacementGroup(ctx context.Context, name string) (*PlacementGroup, error) {
	g, err := getGroup(ctx, &pb.PlacementGroupRequest{Op: placement.OpGet, Name: name})
	if err != nil {
		return nil, err
	}
	return groupOf(g), nil
}

func getGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroup, error) {
	rt := current()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	r, err := rt.PlacementGroup(ctx, req)
	switch {
	case err != nil:
		return nil, fmt.Errorf("rayo: placement group: %w", err)
	case r.Error != "":
		return nil, fmt.Errorf("%w: %s", ErrUnknownPlacementGroup, r.Error)
	case len(r.Groups) != 1:
		return nil, fmt.Errorf("rayo: placement group: the reply names %d groups", len(r.Groups))
	}
	return r.Groups[0], nil
}

// ID is the group's hex ID, as the state API shows it.
func (pg *PlacementGroup) ID() string { return hex.EncodeToString(pg.id) }

// Name is the group's name ("" when it has none).
func (pg *PlacementGroup) Name() string { return pg.name }

// Strategy is how the group's bundles spread over nodes.
func (pg *PlacementGroup) Strategy() PlacementStrategy { return pg.strategy }

// Bundles are the resources the group reserves, one map per bundle.
func (pg *PlacementGroup) Bundles() []Bundle {
	out := make([]Bundle, len(pg.bundles))
	for i, b := range pg.bundles {
		out[i] = make(Bundle, len(b))
		for k, v := range b {
			out[i][k] = v
		}
	}
	return out
}

// Ready waits until every bundle is reserved (Ray's pg.ready()). It fails
// with ErrPlacementGroupRemoved when the group is removed first, and with
// ctx's error, saying why the group waits, when ctx ends first.
func (pg *PlacementGroup) Ready(ctx context.Context) error {
	rt := current()
	if rt == nil {
		return ErrNotInitialized
	}
	g, err := rt.WaitGroup(ctx, pg.id)
	switch {
	case err != nil && g != nil && g.Reason != "":
		return fmt.Errorf("rayo: placement group %s is not ready (%s): %w", pg.ID(), g.Reason, err)
	case err != nil:
		return fmt.Errorf("rayo: placement group %s: %w", pg.ID(), err)
	case g.State == placement.StateRemoved:
		return fmt.Errorf("%w: %s", ErrPlacementGroupRemoved, pg.ID())
	}
	return nil
}

// Remove removes the group: its bundles are given back, the tasks and
// actors running in it are stopped, and those waiting for it fail.
// Removing a removed group does nothing.
func (pg *PlacementGroup) Remove(ctx context.Context) error {
	rt := current()
	if rt == nil {
		return ErrNotInitialized
	}
	r, err := rt.PlacementGroup(ctx, &pb.PlacementGroupRequest{Op: placement.OpRemove, PlacementGroupId: pg.id})
	if err != nil {
		return fmt.Errorf("rayo: remove placement group %s: %w", pg.ID(), err)
	}
	if r.Error != "" {
		return fmt.Errorf("%w: %s", ErrUnknownPlacementGroup, r.Error)
	}
	return nil
}

// PlacementGroupInfo is a placement group as the cluster knows it.
type PlacementGroupInfo struct {
	ID       string
	Name     string
	Strategy PlacementStrategy
	State    string   // PENDING, CREATED, RESCHEDULING or REMOVED
	Bundles  []Bundle // what each bundle reserves
	Nodes    []string // the node (see NodeID) of each bundle; "" while not placed
	Reason   string   // why it waits, while PENDING or RESCHEDULING
	Detached bool
	JobID    string
}

// Info returns the group's state (Ray's placement_group_table(pg)).
func (pg *PlacementGroup) Info(ctx context.Context) (PlacementGroupInfo, error) {
	g, err := getGroup(ctx, &pb.PlacementGroupRequest{Op: placement.OpGet, PlacementGroupId: pg.id})
	if err != nil {
		return PlacementGroupInfo{}, err
	}
	return infoOf(g), nil
}

// PlacementGroups lists the cluster's placement groups, live and lately
// removed, oldest first (Ray's placement_group_table()).
func PlacementGroups(ctx context.Context) ([]PlacementGroupInfo, error) {
	rt := current()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	r, err := rt.PlacementGroup(ctx, &pb.PlacementGroupRequest{Op: placement.OpList})
	if err != nil {
		return nil, fmt.Errorf("rayo: placement groups: %w", err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("rayo: placement groups: %s", r.Error)
	}
	out := make([]PlacementGroupInfo, len(r.Groups))
	for i, g := range r.Groups {
		out[i] = infoOf(g)
	}
	return out, nil
}

func infoOf(g *pb.PlacementGroup) PlacementGroupInfo {
	info := PlacementGroupInfo{
		ID: hex.EncodeToString(g.PlacementGroupId), Name: g.Name, Strategy: PlacementStrategy(g.Strategy),
		State: g.State, Reason: g.Reason, Detached: g.Detached, JobID: g.JobId,
	}
	for _, b := range g.Bundles {
		info.Bundles = append(info.Bundles, Bundle(placement.ResourceMap(b.Resources)))
		node := ""
		if len(b.NodeId) > 0 {
			node = hex.EncodeToString(b.NodeId)[:12] // as NodeID names nodes
		}
		info.Nodes = append(info.Nodes, node)
	}
	return info
}

// InPlacementGroup, for a task or an actor, runs it in bundle index of pg
// (-1: any of its bundles): on that bundle's node, on the bundle's
// resources rather than the node's free ones. It replaces Spread and
// NodeAffinity. The task waits while the group is not ready, and fails
// when the group is removed.
func InPlacementGroup(pg *PlacementGroup, index int) Option {
	return option("InPlacementGroup", forTask|forActor, func(o *options) {
		switch {
		case pg == nil:
			o.fail(errors.New("rayo: InPlacementGroup: nil placement group"))
		case index < -1 || index >= len(pg.bundles):
			o.fail(fmt.Errorf("rayo: InPlacementGroup: bundle index %d out of range: the group has %d bundles", index, len(pg.bundles)))
		default:
			o.placement.Strategy, o.placement.Node, o.placement.Soft = "", "", false
			o.placement.Group, o.placement.Bundle = pg.id, index
		}
	})
}

// CaptureChildTasks, with InPlacementGroup, places the tasks and actors
// that the task (or every call of the actor) submits in the same group, on
// any of its bundles, unless they ask for a placement of their own (Ray's
// placement_group_capture_child_tasks); their children too.
func CaptureChildTasks() Option {
	return option("CaptureChildTasks", forTask|forActor, func(o *options) { o.placement.Capture = true })
}

// placementFor is where a task or actor with placement p, submitted by
// this process, goes: p, or the placement group the running task captures
// its children into when p is the default.
func placementFor(rt *core.Runtime, p core.Placement) (core.Placement, bool) {
	if p.Strategy != "" || p.Node != "" || len(p.Group) > 0 {
		return p, false
	}
	g := rt.CaptureGroup()
	if g == nil {
		return p, false
	}
	return core.Placement{Group: g, Bundle: -1, Capture: true}, true
}

// checkPlacement reports an option that cannot be honoured.
func checkPlacement(o options) error {
	if o.placement.Capture && len(o.placement.Group) == 0 {
		return errors.New("rayo: CaptureChildTasks needs InPlacementGroup")
	}
	return o.optErr
}
