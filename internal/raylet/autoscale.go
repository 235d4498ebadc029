package raylet

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// With autoscaling on, the control store's view carries the shapes of the
// nodes the autoscaler could add (ClusterView.launchable). A request that
// no node now can ever run but one of those shapes could waits here, in
// awaitNode, and is placed again at every view until a node that fits it
// joins; its shape counts in the node's pending demand meanwhile, which
// is what makes the autoscaler add that node.

// errAwaitNode is placeLocked's answer for a request that waits for a
// node the autoscaler can add.
var errAwaitNode = errors.New("raylet: the request waits for a node the autoscaler can add")

// setLaunchableLocked takes the view's launchable node shapes.
func (r *Raylet) setLaunchableLocked(v *pb.ClusterView) {
	r.launchable = r.launchable[:0]
	for _, d := range v.Launchable {
		r.launchable = append(r.launchable, placement.ResourceMap(d.Shape))
	}
}

// launchableLocked says whether a node the autoscaler can add fits res.
func (r *Raylet) launchableLocked(res []*pb.Resource) bool {
	for _, m := range r.launchable {
		if fits(m, res) {
			return true
		}
	}
	return false
}

// PendingShapes is the node's waiting lease requests grouped by resource
// shape: those queued for room here and those waiting for a node the
// autoscaler can add.
func (r *Raylet) PendingShapes() []*pb.ResourceDemand {
	r.mu.Lock()
	defer r.mu.Unlock()
	byKey := map[string]*pb.ResourceDemand{}
	var keys []string
	add := func(res []*pb.Resource) {
		k := ShapeKey(res)
		d := byKey[k]
		if d == nil {
			d = &pb.ResourceDemand{Shape: placement.ResourceList(placement.ResourceMap(res))}
			byKey[k] = d
			keys = append(keys, k)
		}
		d.Count++
	}
	for _, p := range r.pending {
		add(p.res)
	}
	for _, p := range r.awaitNode {
		add(p.res)
	}
	sort.Strings(keys)
	out := make([]*pb.ResourceDemand, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out
}

// ShapeKey names a resource shape: its positive quantities by name, in
// name order (such as "CPU=1,GPU=1").
func ShapeKey(res []*pb.Resource) string {
	m := placement.ResourceMap(res)
	names := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + strconv.FormatFloat(m[k], 'g', -1, 64))
	}
	return b.String()
}
