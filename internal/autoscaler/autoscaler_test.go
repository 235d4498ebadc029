package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// fakeStore is a control store held in memory.
type fakeStore struct {
	mu     sync.Mutex
	nodes  []*pb.NodeInfo
	groups []*pb.PlacementGroup
	kv     map[string][]byte
}

func (s *fakeStore) Nodes(context.Context) ([]*pb.NodeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*pb.NodeInfo(nil), s.nodes...), nil
}

func (s *fakeStore) PlacementGroups(context.Context) ([]*pb.PlacementGroup, error) {
	return s.groups, nil
}

func (s *fakeStore) KVGet(_ context.Context, ns, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.kv[ns+"/"+key]
	return v, ok, nil
}

func (s *fakeStore) KVPut(_ context.Context, ns, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv == nil {
		s.kv = map[string][]byte{}
	}
	s.kv[ns+"/"+key] = v
	return nil
}

// fakeProvider records launches and terminations.
type fakeProvider struct {
	types      []NodeType
	insts      []Instance
	next       int
	terminated []string
}

func (p *fakeProvider) NodeTypes() []NodeType { return p.types }
func (p *fakeProvider) Instances(context.Context) ([]Instance, error) {
	return append([]Instance(nil), p.insts...), nil
}
func (p *fakeProvider) Launch(_ context.Context, t string, n int) error {
	for range n {
		p.next++
		p.insts = append(p.insts, Instance{ID: fmt.Sprintf("i%d", p.next), NodeType: t, State: InstanceRunning})
	}
	return nil
}
func (p *fakeProvider) Terminate(_ context.Context, ids []string) error {
	p.terminated = append(p.terminated, ids...)
	p.insts = slices.DeleteFunc(p.insts, func(in Instance) bool { return slices.Contains(ids, in.ID) })
	return nil
}

func res(kv ...any) []*pb.Resource {
	var out []*pb.Resource
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &pb.Resource{Name: kv[i].(string), Quantity: kv[i+1].(float64)})
	}
	return out
}

func node(id byte, inst string, total, avail []*pb.Resource, pending ...*pb.ResourceDemand) *pb.NodeInfo {
	n := &pb.NodeInfo{NodeId: []byte{id}, State: "ALIVE", Resources: total, Available: avail, PendingShapes: pending}
	if inst != "" {
		n.Labels = map[string]string{LabelInstance: inst}
	} else {
		n.Head = true
	}
	return n
}

// newTest is an autoscaler on fakes whose rounds the test runs by hand,
// with a clock the test moves.
func newTest(t *testing.T, p *fakeProvider, s *fakeStore, maxWorkers int) (*Autoscaler, *time.Time) {
	t.Helper()
	now := time.Unix(1000, 0)
	if err := CheckNodeTypes(p.types); err != nil {
		t.Fatal(err)
	}
	a := &Autoscaler{
		cfg:   Config{Provider: p, Store: s, MaxWorkers: maxWorkers, IdleTimeout: 10 * time.Second, Interval: time.Second, LaunchTimeout: time.Minute, Now: func() time.Time { return now }},
		types: p.types, log: discard(), seen: map[string]time.Time{}, idleSince: map[string]time.Time{},
	}
	return a, &now
}

func TestPlanPacksShapesOntoNodeTypes(t *testing.T) {
	types := []NodeType{
		{Name: "small", Resources: map[string]float64{"CPU": 2}, MaxWorkers: 10},
		{Name: "gpu", Resources: map[string]float64{"CPU": 4, "GPU": 1}, MaxWorkers: 1},
	}
	shapes := []Shape{{"CPU": 1}, {"CPU": 1}, {"CPU": 1}, {"GPU": 1}, {"GPU": 1}, {"CPU": 3}}
	launch, unmet := plan(types, map[string]int{}, 0, shapes)
	// The first GPU shape opens the one gpu node, the second finds no
	// room; CPU=3 and one CPU=1 fill the gpu node's 4 CPUs (largest
	// first), the two other CPU=1 take one small node.
	if launch["gpu"] != 1 || launch["small"] != 1 {
		t.Fatalf("launch = %v, want gpu 1, small 1", launch)
	}
	if len(unmet) != 1 || unmet[0]["GPU"] != 1 {
		t.Fatalf("unmet = %v, want one GPU=1", unmet)
	}
	// The cluster-wide bound holds.
	launch, unmet = plan(types, map[string]int{"small": 1}, 2, []Shape{{"CPU": 2}, {"CPU": 2}, {"CPU": 2}})
	if launch["small"] != 1 || len(unmet) != 2 {
		t.Fatalf("with max workers 2 and one node: launch = %v, unmet = %v; want one more node and two shapes unmet", launch, unmet)
	}
}

func TestCheckNodeTypesRefusesBadTypes(t *testing.T) {
	for name, types := range map[string][]NodeType{
		"none":        nil,
		"no name":     {{Resources: map[string]float64{"CPU": 1}, MaxWorkers: 1}},
		"twice":       {{Name: "a", Resources: map[string]float64{"CPU": 1}, MaxWorkers: 1}, {Name: "a", Resources: map[string]float64{"CPU": 1}, MaxWorkers: 1}},
		"no resource": {{Name: "a", MaxWorkers: 1}},
		"min > max":   {{Name: "a", Resources: map[string]float64{"CPU": 1}, MinWorkers: 2, MaxWorkers: 1}},
		"negative":    {{Name: "a", Resources: map[string]float64{"CPU": -1}, MaxWorkers: 1}},
	} {
		if err := CheckNodeTypes(types); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: CheckNodeTypes = %v, want ErrConfig", name, err)
		}
	}
}

func TestAutoscalerGrowsForDemandAndReleasesIdleNodes(t *testing.T) {
	ctx := context.Background()
	p := &fakeProvider{types: []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MaxWorkers: 2}}}
	s := &fakeStore{nodes: []*pb.NodeInfo{node(0, "", res("CPU", 1.0), res("CPU", 0.0), &pb.ResourceDemand{Shape: res("CPU", 1.0), Count: 3})}}
	a, now := newTest(t, p, s, 2)
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.insts) != 2 {
		t.Fatalf("after demand for 3 CPUs on a busy 1-CPU head with max 2 workers: %d instances, want 2", len(p.insts))
	}
	st := a.Status()
	if len(st.PendingLaunches) != 0 || st.NodeTypes[0].Pending != 2 || len(st.Unmet) != 1 {
		t.Fatalf("status = %+v, want 2 pending of type w and 1 shape unmet", st)
	}
	// Nothing more is launched while those come up.
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.insts) != 2 || len(a.Status().PendingLaunches) != 2 {
		t.Fatalf("second round: %d instances, status %+v; want the same 2, pending", len(p.insts), a.Status())
	}
	// They register and take the work; then it ends.
	s.nodes = append(s.nodes, node(1, "i1", res("CPU", 1.0), res("CPU", 0.0)), node(2, "i2", res("CPU", 1.0), res("CPU", 0.0)))
	s.nodes[0].PendingShapes = nil
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.NodeTypes[0].Running != 2 || len(st.IdleNodes) != 0 {
		t.Fatalf("busy: status %+v, want 2 running, none idle", st)
	}
	s.nodes[1].Available, s.nodes[2].Available = res("CPU", 1.0), res("CPU", 1.0)
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); len(st.IdleNodes) != 2 || st.IdleNodes[0].ReleaseAtUnixMs != now.Add(10*time.Second).UnixMilli() {
		t.Fatalf("idle: status %+v, want 2 idle nodes released at +10s", st)
	}
	*now = now.Add(9 * time.Second)
	if err := a.step(ctx); err != nil || len(p.terminated) != 0 {
		t.Fatalf("before the idle timeout: err %v, terminated %v", err, p.terminated)
	}
	*now = now.Add(time.Second)
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.terminated) != 2 {
		t.Fatalf("after the idle timeout: terminated %v, want both", p.terminated)
	}
}

func TestAutoscalerKeepsMinWorkersAndDropsNodesThatNeverCame(t *testing.T) {
	ctx := context.Background()
	p := &fakeProvider{types: []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MinWorkers: 1, MaxWorkers: 3}}}
	s := &fakeStore{nodes: []*pb.NodeInfo{node(0, "", res("CPU", 1.0), res("CPU", 1.0))}}
	a, now := newTest(t, p, s, 0)
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.insts) != 1 {
		t.Fatalf("min workers 1: %d instances", len(p.insts))
	}
	if err := a.step(ctx); err != nil { // it is seen waiting for its node from here
		t.Fatal(err)
	}
	*now = now.Add(2 * time.Minute) // past LaunchTimeout with no node
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.terminated, []string{"i1"}) {
		t.Fatalf("terminated %v, want the instance that never registered", p.terminated)
	}
	if len(p.insts) != 1 || p.insts[0].ID != "i2" {
		t.Fatalf("instances %v, want a new one for the minimum", p.insts)
	}
	// An idle node at the minimum is kept however long it idles.
	s.nodes = append(s.nodes, node(2, "i2", res("CPU", 1.0), res("CPU", 1.0)))
	for range 3 {
		*now = now.Add(time.Minute)
		if err := a.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.terminated) != 1 {
		t.Fatalf("terminated %v: the minimum's node went too", p.terminated)
	}
}

func TestStandingRequestAndGroupsCountAsDemand(t *testing.T) {
	ctx := context.Background()
	p := &fakeProvider{types: []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 2}, MaxWorkers: 5}}}
	// The head is busy, but a standing request counts against what nodes
	// have, busy or not: 2 CPUs on the head, then one new node for 2 more.
	s := &fakeStore{nodes: []*pb.NodeInfo{node(0, "", res("CPU", 2.0), res("CPU", 0.0))}}
	_ = s.KVPut(ctx, Namespace, KeyRequested, EncodeDemands([]*pb.ResourceDemand{{Shape: res("CPU", 2.0), Count: 2}}))
	s.groups = []*pb.PlacementGroup{{State: "PENDING", Bundles: []*pb.Bundle{{Resources: res("CPU", 2.0)}, {Resources: res("CPU", 2.0), NodeId: []byte{0}}}}}
	a, now := newTest(t, p, s, 0)
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	// One node for the request's second bundle, one for the group's
	// unplaced bundle.
	if len(p.insts) != 2 {
		t.Fatalf("%d instances, want 2", len(p.insts))
	}
	// The request keeps its node however long it idles.
	s.groups = nil
	s.nodes = append(s.nodes, node(1, "i1", res("CPU", 2.0), res("CPU", 2.0)), node(2, "i2", res("CPU", 2.0), res("CPU", 2.0)))
	for range 3 {
		if err := a.step(ctx); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(time.Minute)
	}
	if len(p.terminated) != 1 {
		t.Fatalf("terminated %v, want only one of the two nodes (the request keeps one)", p.terminated)
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestStartPublishesNodeTypesAndCloseWithdrawsThem(t *testing.T) {
	ctx := context.Background()
	p := &fakeProvider{types: []NodeType{
		{Name: "w", Resources: map[string]float64{"CPU": 2}, MaxWorkers: 3},
		{Name: "never", Resources: map[string]float64{"CPU": 64}, MaxWorkers: 0},
	}}
	s := &fakeStore{}
	a, err := Start(ctx, Config{Provider: p, Store: s, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	b, found, _ := s.KVGet(ctx, Namespace, KeyLaunchable)
	ds, err := DecodeDemands(b)
	if !found || err != nil || len(ds) != 1 || ds[0].Count != 3 || ds[0].Shape[0].Name != "CPU" || ds[0].Shape[0].Quantity != 2 {
		t.Fatalf("launchable after Start: %v %v %v, want one shape CPU=2 of 3 (a type with max 0 is not launchable)", ds, found, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _, _ := s.KVGet(ctx, Namespace, KeyLaunchable); len(b) != 0 {
		t.Fatalf("launchable after Close: %x, want it withdrawn", b)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	// A bad configuration is refused before anything is published.
	if _, err := Start(ctx, Config{Provider: p, Store: s, MaxWorkers: -1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("Start with max workers -1: %v", err)
	}
	if _, err := Start(ctx, Config{Store: s}); !errors.Is(err, ErrConfig) {
		t.Fatalf("Start without a provider: %v", err)
	}
}

// An instance whose pod ended (a drained node's, kept in its group's
// count by the operator) is terminated in the next round, and its type
// refilled to its minimum; a running one with its node is kept.
func TestEndedInstanceIsTerminated(t *testing.T) {
	p := &fakeProvider{types: []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MinWorkers: 1, MaxWorkers: 3}},
		insts: []Instance{{ID: "gone", NodeType: "w", State: InstanceEnded}, {ID: "up", NodeType: "w", State: InstanceRunning}}}
	s := &fakeStore{nodes: []*pb.NodeInfo{
		node(1, "", res("CPU", 1.0), res("CPU", 1.0)),
		node(2, "up", res("CPU", 1.0), res("CPU", 0.0)),
	}}
	a, _ := newTest(t, p, s, 0)
	if err := a.step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.terminated, []string{"gone"}) {
		t.Fatalf("terminated %v, want [gone]", p.terminated)
	}
	if len(p.insts) != 1 || p.insts[0].ID != "up" {
		t.Errorf("instances %+v, want only up (its type's minimum 1 is met)", p.insts)
	}
}

// The provider's node types are read at every round: a change (a
// RayoCluster's group edited) is published and planned with; types that
// do not pass CheckNodeTypes are reported and the old ones kept.
func TestNodeTypesFollowTheProvider(t *testing.T) {
	p := &fakeProvider{types: []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MaxWorkers: 1}}}
	waiting := &pb.ResourceDemand{Shape: res("CPU", 1.0), Count: 3}
	s := &fakeStore{nodes: []*pb.NodeInfo{node(1, "", res("CPU", 1.0), res("CPU", 0.0), waiting)}}
	a, _ := newTest(t, p, s, 0)
	ctx := context.Background()
	launchable := func() int32 {
		b, _, _ := s.KVGet(ctx, Namespace, KeyLaunchable)
		ds, err := DecodeDemands(b)
		if err != nil || len(ds) != 1 {
			t.Fatalf("launchable %v, %v", ds, err)
		}
		return ds[0].Count
	}
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.insts) != 1 {
		t.Fatalf("%d instances with max 1, want 1", len(p.insts))
	}
	p.types = []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MaxWorkers: 3}}
	if err := a.step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(p.insts) != 3 || launchable() != 3 || a.Status().MaxWorkers != 3 {
		t.Fatalf("after max 3: %d instances, launchable %d, status max %d; want 3, 3, 3", len(p.insts), launchable(), a.Status().MaxWorkers)
	}
	p.types = []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MinWorkers: 4, MaxWorkers: 3}}
	if err := a.step(ctx); err == nil || a.Status().LastError == "" {
		t.Fatalf("types with min above max: no error (status %+v)", a.Status())
	}
	if a.types[0].MaxWorkers != 3 || a.types[0].MinWorkers != 0 || launchable() != 3 {
		t.Errorf("bad types taken up: %+v", a.types)
	}
}
