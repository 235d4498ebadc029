package raylet

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// A node holds bundles of placement groups. Preparing one sets its
// resources aside (no task can take them); committing it adds them back
// under the group's names (see placement.BundleResources), which only
// tasks in the group ask for; releasing it stops the workers using them
// and gives the node's resources back.

type bundleKey struct {
	group string // hex ID
	index int32
}

type bundleRec struct {
	base  map[string]float64 // what it set aside
	added map[string]float64 // what it added once committed
}

// BundleOp prepares, commits or releases bundles of a placement group on
// this node.
func (r *Raylet) BundleOp(op *pb.BundleOp) error {
	group := hex.EncodeToString(op.PlacementGroupId)
	var after []func()
	r.mu.Lock()
	defer func() {
		r.grantLocked(&after)
		r.mu.Unlock()
		run(after)
	}()
	if r.closed {
		return ErrClosed
	}
	if r.bundles == nil {
		r.bundles = make(map[bundleKey]*bundleRec)
	}
	switch op.Op {
	case placement.OpPrepare, placement.OpReserve:
		if len(op.Bundles) != len(op.Indexes) {
			return fmt.Errorf("raylet: %d bundles for %d indexes", len(op.Bundles), len(op.Indexes))
		}
		need := map[string]float64{}
		var fresh []int
		for i, b := range op.Bundles {
			if r.bundles[bundleKey{group, op.Indexes[i]}] != nil {
				continue // prepared already: a retried request
			}
			fresh = append(fresh, i)
			for _, x := range b.Resources {
				need[x.Name] += x.Quantity
			}
		}
		for name, q := range need {
			if r.avail[name] < q-1e-9 {
				return fmt.Errorf("raylet: bundles need %s, this node has %s free", describe(need), describe(r.baseAvailLocked()))
			}
		}
		for _, i := range fresh {
			base := placement.ResourceMap(op.Bundles[i].Resources)
			for name, q := range base {
				r.avail[name] -= q
			}
			r.bundles[bundleKey{group, op.Indexes[i]}] = &bundleRec{base: base}
		}
		if op.Op == placement.OpReserve {
			return r.commitBundlesLocked(group, op.Indexes)
		}
	case placement.OpCommit:
		return r.commitBundlesLocked(group, op.Indexes)
	case placement.OpRelease:
		r.releaseBundlesLocked(group, op.Indexes, &after)
	default:
		return fmt.Errorf("raylet: unknown bundle operation %q", op.Op)
	}
	return nil
}

// commitBundlesLocked adds prepared bundles' resources under the group's
// names.
func (r *Raylet) commitBundlesLocked(group string, indexes []int32) error {
	for _, i := range indexes {
		b := r.bundles[bundleKey{group, i}]
		if b == nil {
			return fmt.Errorf("raylet: bundle %d of placement group %s was not prepared here", i, group)
		}
		if b.added != nil {
			continue
		}
		b.added = placement.BundleResources(b.base, group, int(i))
		for name, q := range b.added {
			r.total[name] += q
			r.avail[name] += q
		}
	}
	return nil
}

// releaseBundlesLocked gives back bundles of group; when none is left
// here, the workers holding the group's resources are stopped and the
// requests waiting for them fail.
func (r *Raylet) releaseBundlesLocked(group string, indexes []int32, after *[]func()) {
	for _, i := range indexes {
		k := bundleKey{group, i}
		b := r.bundles[k]
		if b == nil {
			continue
		}
		delete(r.bundles, k)
		for name, q := range b.added {
			r.total[name] -= q
			r.avail[name] -= q
			if r.total[name] < 1e-9 {
				delete(r.total, name)
				delete(r.avail, name)
			}
		}
		for name, q := range b.base {
			r.avail[name] += q
		}
	}
	for k := range r.bundles {
		if k.group == group {
			return
		}
	}
	for _, l := range r.leases {
		if usesGroup(l.res, group) {
			r.log.Info("placement group removed: stopping its worker", "group", group, "pid", l.w.pid)
			r.workerGoneLocked(l.w)
		}
	}
	msg := fmt.Sprintf("placement group %s was removed", group)
	kept := r.pending[:0]
	for _, p := range r.pending {
		if usesGroup(p.res, group) {
			cb := p.cb
			*after = append(*after, func() { cb(&pb.LeaseReply{Error: msg}, nil) })
			continue
		}
		kept = append(kept, p)
	}
	for i := len(kept); i < len(r.pending); i++ {
		r.pending[i] = nil
	}
	r.pending = kept
}

func usesGroup(res []*pb.Resource, group string) bool {
	for _, x := range res {
		if placement.OfGroup(x.Name, group) {
			return true
		}
	}
	return false
}

// baseAvailLocked is what the node has free, without the groups' own.
func (r *Raylet) baseAvailLocked() map[string]float64 {
	out := make(map[string]float64, len(r.avail))
	for k, v := range r.avail {
		if !placement.IsGroupResource(k) {
			out[k] = v
		}
	}
	return out
}

// PlacementGroup serves a placement group request: the node's own
// manager when alone, the control store's in a cluster.
func (r *Raylet) PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	return r.cfg.Cluster.PlacementGroup(ctx, req)
}

func (r *Raylet) servePlacementGroup(_ context.Context, req *pb.PlacementGroupRequest, reply func(*pb.PlacementGroupReply, error)) {
	r.procs.Add(1) // a WAIT waits; a cluster asks the control store
	go func() {
		defer r.procs.Done()
		ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
		defer cancel()
		reply(r.PlacementGroup(ctx, req))
	}()
}

// localGroups is the host of an embedded cluster's placement groups: this
// node alone.
type localGroups struct{ r *Raylet }

func (h localGroups) Nodes() []placement.Node {
	r := h.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	n := placement.Node{ID: r.nodeID.String(), Addr: r.addr, Total: map[string]float64{}, Avail: map[string]float64{}}
	for k, v := range r.total {
		n.Total[k] = v
	}
	for k, v := range r.avail {
		n.Avail[k] = v
	}
	return []placement.Node{n}
}

func (h localGroups) Bundles(_ context.Context, node string, op *pb.BundleOp) error {
	if node != h.r.nodeID.String() {
		return fmt.Errorf("raylet: no node %s here", node)
	}
	return h.r.BundleOp(op)
}

func (localGroups) Changed(*pb.PlacementGroup, []int, bool) {}
func (localGroups) Publish()                                {}
func (localGroups) Save(*pb.PlacementGroup) error           { return nil }
