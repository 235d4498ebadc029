package placement

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"google.golang.org/protobuf/proto"
)

// fakeHost is a cluster of nodes that keep their bundles' accounts.
type fakeHost struct {
	mu       sync.Mutex
	nodes    map[string]*Node
	ops      []string                      // "node OP [indexes]"
	held     map[string]map[string]float64 // "node group index" -> what it set aside
	failOnce map[string]bool
	saved    map[string]string     // group -> state last saved
	onOp     func(node, op string) // called after an operation succeeds, without the lock
}

func newFakeHost(ids ...string) *fakeHost {
	h := &fakeHost{nodes: map[string]*Node{}, failOnce: map[string]bool{}, saved: map[string]string{}, held: map[string]map[string]float64{}}
	for _, id := range ids {
		h.add(id, 1)
	}
	return h
}

func (h *fakeHost) add(id string, cpus float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodes[id] = &Node{ID: id, Total: map[string]float64{"CPU": cpus}, Avail: map[string]float64{"CPU": cpus}}
}

func (h *fakeHost) Nodes() []Node {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Node
	for _, n := range h.nodes {
		c := Node{ID: n.ID, Total: map[string]float64{}, Avail: map[string]float64{}}
		for k, v := range n.Total {
			c.Total[k] = v
		}
		for k, v := range n.Avail {
			c.Avail[k] = v
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Node) int { return cmp(a.ID, b.ID) })
	return out
}

func cmp(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (h *fakeHost) Bundles(_ context.Context, node string, op *pb.BundleOp) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, fmt.Sprintf("%s %s %v", node, op.Op, op.Indexes))
	n := h.nodes[node]
	if n == nil {
		return errors.New("no such node")
	}
	if op.Op == OpPrepare && h.failOnce[node] {
		h.failOnce[node] = false
		return errors.New("busy")
	}
	if hook := h.onOp; hook != nil {
		defer func() {
			h.mu.Unlock()
			hook(node, op.Op)
			h.mu.Lock()
		}()
	}
	for i, idx := range op.Indexes {
		key := fmt.Sprintf("%s %x %d", node, op.PlacementGroupId, idx)
		switch op.Op {
		case OpPrepare:
			m := ResourceMap(op.Bundles[i].Resources)
			take(n.Avail, m)
			h.held[key] = m
		case OpRelease:
			for k, v := range h.held[key] {
				n.Avail[k] += v
			}
			delete(h.held, key)
		}
	}
	return nil
}

func (h *fakeHost) Changed(*pb.PlacementGroup, []int, bool) {}
func (h *fakeHost) Publish()                                {}

func (h *fakeHost) Save(g *pb.PlacementGroup) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.saved[hex.EncodeToString(g.PlacementGroupId)] = g.State
	return nil
}

func (h *fakeHost) opsOf(node string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, o := range h.ops {
		if o[:len(node)+1] == node+" " {
			out = append(out, o[len(node)+1:])
		}
	}
	return out
}

func spec(job string, detached bool, strategy string, cpus ...float64) *pb.PlacementGroup {
	g := &pb.PlacementGroup{Strategy: strategy, JobId: job, Detached: detached}
	for _, c := range cpus {
		g.Bundles = append(g.Bundles, &pb.Bundle{Resources: []*pb.Resource{{Name: "CPU", Quantity: c}}})
	}
	return g
}

func waitState(t *testing.T, m *Manager, id, state string) *pb.PlacementGroup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		// The state and the channel that says it changed, read together: a
		// change between the two would be waited for in vain.
		m.mu.Lock()
		live, ok := m.groups[id]
		var info *pb.PlacementGroup
		var wake chan struct{}
		if ok {
			info, wake = proto.Clone(live.info).(*pb.PlacementGroup), live.wake
		}
		m.mu.Unlock()
		if !ok {
			t.Fatalf("group %s is gone, want %s", id, state)
		}
		g := info
		if g.State == state {
			return g
		}
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatalf("group %s stayed %s (%s), want %s", id, g.State, g.Reason, state)
		}
	}
}

func TestManagerUndoesAHalfReservation(t *testing.T) {
	h := newFakeHost("0a", "0b")
	h.failOnce["0b"] = true
	m := NewManager(h, nil, nil)
	defer m.Close()
	g, err := m.Create(spec("j", false, StrictSpread, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(g.PlacementGroupId)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := m.Wait(ctx, id)
	if err != nil || got.State != StateCreated {
		t.Fatalf("Wait: %v, %v", got, err)
	}
	// b refused the first time: whatever a had prepared then was released
	// before the second try, so each node holds one bundle, no more.
	a, b := h.opsOf("0a"), h.opsOf("0b")
	prepares := 0
	for _, op := range a {
		switch op {
		case "PREPARE [0]":
			prepares++
		case "RELEASE [0]":
			prepares--
		}
	}
	if b[0] != "PREPARE [1]" || b[len(b)-1] != "COMMIT [1]" || a[len(a)-1] != "COMMIT [0]" || prepares != 1 {
		t.Fatalf("ops on a: %v; on b: %v", a, b)
	}
	h.mu.Lock()
	held, freeA, freeB := len(h.held), h.nodes["0a"].Avail["CPU"], h.nodes["0b"].Avail["CPU"]
	h.mu.Unlock()
	if held != 2 || freeA != 0 || freeB != 0 {
		t.Fatalf("%d bundles held, CPU free %g and %g", held, freeA, freeB)
	}
	if n := fmt.Sprintf("%x,%x", got.Bundles[0].NodeId, got.Bundles[1].NodeId); n != "0a,0b" {
		t.Fatalf("bundles on %s", n)
	}
}

func TestManagerReschedulesAndRemovesWithTheJob(t *testing.T) {
	h := newFakeHost("0a", "0b")
	m := NewManager(h, nil, nil)
	defer m.Close()
	g, err := m.Create(spec("j1", false, StrictSpread, 0.5, 0.5))
	if err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(g.PlacementGroupId)
	kept, err := m.Create(spec("j1", true, Pack, 0.25))
	if err != nil {
		t.Fatal(err)
	}
	keptID := hex.EncodeToString(kept.PlacementGroupId)
	created := waitState(t, m, id, StateCreated)
	waitState(t, m, keptID, StateCreated)
	lost := 0
	if fmt.Sprintf("%x", created.Bundles[1].NodeId) == "0b" {
		lost = 1
	}
	// Node 0b dies; 0c joins: the bundle that was on 0b goes to 0c and the
	// other stays where it was.
	h.mu.Lock()
	delete(h.nodes, "0b")
	h.mu.Unlock()
	m.NodeDead("0b")
	g2, _ := m.Get(id, "")
	if g2.State != StateRescheduling || len(g2.Bundles[lost].NodeId) != 0 {
		t.Fatalf("after the node died: %v", g2)
	}
	prepares := len(h.opsOf("0a"))
	h.add("0c", 1)
	m.Kick()
	again := waitState(t, m, id, StateCreated)
	if fmt.Sprintf("%x", again.Bundles[lost].NodeId) != "0c" || fmt.Sprintf("%x", again.Bundles[1-lost].NodeId) != "0a" {
		t.Fatalf("rescheduled to %x and %x", again.Bundles[0].NodeId, again.Bundles[1].NodeId)
	}
	if ops := h.opsOf("0a"); len(ops) != prepares {
		t.Fatalf("the bundle that stayed was touched again: %v", ops[prepares:])
	}
	// The job ends: its group goes, its detached one stays.
	m.JobEnded("j1")
	if g, _ := m.Get(id, ""); g.State != StateRemoved {
		t.Fatalf("after the job ended: %s", g.State)
	}
	if g, _ := m.Get(keptID, ""); g.State != StateCreated {
		t.Fatalf("the detached group after the job ended: %s", g.State)
	}
	// Its bundles are released by the loop; the store forgets it.
	deadline := time.Now().Add(10 * time.Second)
	for slices.Index(h.opsOf("0c"), "RELEASE [0]")+slices.Index(h.opsOf("0c"), "RELEASE [1]") == -2 {
		if time.Now().After(deadline) {
			t.Fatalf("never released on 0c: %v", h.opsOf("0c"))
		}
		m.Kick()
		time.Sleep(5 * time.Millisecond) // the loop is another goroutine
	}
	h.mu.Lock()
	st := h.saved[id]
	h.mu.Unlock()
	if st != StateRemoved {
		t.Fatalf("last saved state %s", st)
	}
	if err := m.Remove(id); err != nil {
		t.Fatalf("removing a removed group: %v", err)
	}
	if err := m.Remove("ffff"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("removing an unknown group: %v", err)
	}
}

func TestManagerRestoresGroups(t *testing.T) {
	h := newFakeHost("0a")
	m := NewManager(h, nil, nil)
	g, err := m.Create(spec("j", false, Pack, 0.5))
	if err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(g.PlacementGroupId)
	created := waitState(t, m, id, StateCreated)
	m.Close()
	// A control store started again from its store keeps the group where
	// it was, without reserving it again.
	n := len(h.opsOf("0a"))
	m2 := NewManager(h, nil, []*pb.PlacementGroup{created})
	defer m2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := m2.Wait(ctx, id)
	if err != nil || got.State != StateCreated || fmt.Sprintf("%x", got.Bundles[0].NodeId) != "0a" {
		t.Fatalf("restored: %v, %v", got, err)
	}
	m2.Kick()
	if ops := h.opsOf("0a"); len(ops) != n {
		t.Fatalf("a restored group was reserved again: %v", ops[n:])
	}
}

func TestManagerNodeDiesWhileItReserves(t *testing.T) {
	h := newFakeHost("0a", "0b")
	m := NewManager(h, nil, nil)
	defer m.Close()
	var once sync.Once
	h.onOp = func(node, op string) {
		if node == "0b" && op == OpCommit {
			// 0b dies right after it reserved its bundle; 0c joins.
			once.Do(func() {
				h.mu.Lock()
				delete(h.nodes, "0b")
				h.mu.Unlock()
				m.NodeDead("0b")
				h.add("0c", 1)
			})
		}
	}
	g, err := m.Create(spec("j", false, StrictSpread, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	got := waitState(t, m, hex.EncodeToString(g.PlacementGroupId), StateCreated)
	nodes := fmt.Sprintf("%x,%x", got.Bundles[0].NodeId, got.Bundles[1].NodeId)
	if nodes != "0a,0c" && nodes != "0c,0a" {
		t.Fatalf("bundles on %s after 0b died while it reserved", nodes)
	}
}
