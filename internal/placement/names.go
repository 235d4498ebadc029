// Package placement is rayo's placement groups: sets of resource bundles
// reserved on the cluster's nodes at once (gang scheduling), which tasks
// and actors are then scheduled into.
//
// A Manager decides where the bundles go and drives a two-phase
// reservation on the raylets (prepare, then commit; release to undo or
// remove). It runs in the control store of a cluster, or in the raylet of
// an embedded one. A committed bundle shows up on its node as resources
// named after the group (see BundleResources), and a task in the group
// asks for those instead of the node's own (see Demand): the ordinary
// scheduler then does the rest.
package placement

import (
	"sort"
	"strconv"
	"strings"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Strategies, as Ray names them.
const (
	Pack         = "PACK"          // as few nodes as possible
	Spread       = "SPREAD"        // as many nodes as possible
	StrictPack   = "STRICT_PACK"   // one node, or wait
	StrictSpread = "STRICT_SPREAD" // a node per bundle, or wait
)

// States of a group, as the state API shows them.
const (
	StatePending      = "PENDING"
	StateCreated      = "CREATED"
	StateRescheduling = "RESCHEDULING" // a bundle's node died: placing it again
	StateRemoved      = "REMOVED"
)

// Operations of a PlacementGroupRequest and of a BundleOp.
const (
	OpCreate  = "CREATE"
	OpWait    = "WAIT"
	OpRemove  = "REMOVE"
	OpGet     = "GET"
	OpList    = "LIST"
	OpPrepare = "PREPARE"
	OpCommit  = "COMMIT"
	OpReserve = "RESERVE" // prepare and commit at once: a group on one node
	OpRelease = "RELEASE"
)

// bundleMarker is a resource every bundle has (markerUnits of it), and that
// every task in the group asks a little of (markerDemand): a task that
// needs none of the bundle's resources still runs where the bundle is.
const (
	bundleMarker = "bundle"
	markerUnits  = 1000
	markerDemand = 0.001
)

const groupInfix = "_group_"

// Resource is the name of resource name in bundle index of group (hex
// ID); index < 0 names the group's wildcard, which every bundle of the
// group on a node adds to.
func Resource(name, group string, index int) string {
	if index < 0 {
		return name + groupInfix + group
	}
	return name + groupInfix + strconv.Itoa(index) + "_" + group
}

// IsGroupResource reports whether a resource belongs to a placement group.
func IsGroupResource(name string) bool { return strings.Contains(name, groupInfix) }

// IsWildcard reports whether name is a group's wildcard resource (see
// Resource), which a task in the group asks for whatever its bundle.
func IsWildcard(name string) bool {
	i := strings.LastIndex(name, groupInfix)
	return i >= 0 && !strings.Contains(name[i+len(groupInfix):], "_")
}

// OfGroup reports whether resource name belongs to group (hex ID).
func OfGroup(name, group string) bool {
	return IsGroupResource(name) && strings.HasSuffix(name, "_"+group)
}

// BundleResources is what a committed bundle adds to its node: each of
// its resources under the bundle's name and the group's wildcard, and the
// bundle marker.
func BundleResources(base map[string]float64, group string, index int) map[string]float64 {
	out := make(map[string]float64, 2*len(base)+2)
	for name, q := range base {
		out[Resource(name, group, index)] += q
		out[Resource(name, group, -1)] += q
	}
	out[Resource(bundleMarker, group, index)] += markerUnits
	out[Resource(bundleMarker, group, -1)] += markerUnits
	return out
}

// Demand turns what a task needs into what it asks for in bundle index of
// group (any bundle when index < 0). A task in a given bundle takes from
// the group's wildcard too, so that a task in any bundle cannot take what
// it holds.
func Demand(res map[string]float64, group string, index int) map[string]float64 {
	out := make(map[string]float64, 2*len(res)+2)
	for name, q := range res {
		if q <= 0 {
			continue
		}
		out[Resource(name, group, -1)] += q
		if index >= 0 {
			out[Resource(name, group, index)] += q
		}
	}
	out[Resource(bundleMarker, group, -1)] += markerDemand
	if index >= 0 {
		out[Resource(bundleMarker, group, index)] += markerDemand
	}
	return out
}

// ResourceList turns a resource map into a list sorted by name.
func ResourceList(m map[string]float64) []*pb.Resource {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]*pb.Resource, len(names))
	for i, k := range names {
		out[i] = &pb.Resource{Name: k, Quantity: m[k]}
	}
	return out
}

// ResourceMap turns a resource list into a map.
func ResourceMap(list []*pb.Resource) map[string]float64 {
	m := make(map[string]float64, len(list))
	for _, x := range list {
		m[x.Name] += x.Quantity
	}
	return m
}
