package placement

import (
	"fmt"
	"sort"
	"strings"
)

// Node is a node bundles may go to, as the placer sees it.
type Node struct {
	ID    string // hex node ID
	Addr  string // its raylet's address
	Total map[string]float64
	Avail map[string]float64
}

// Place chooses a node for each bundle that has none (at[i] == ""), the
// others staying where they are, following strategy. It returns the nodes
// (IDs, one per bundle), or why the bundles cannot be placed now; never is
// set when they cannot be placed however free the nodes were.
func Place(strategy string, bundles []map[string]float64, at []string, nodes []Node) (out []string, reason string, never bool) {
	if reason := feasible(strategy, bundles, at, nodes); reason != "" {
		return nil, reason, true
	}
	free := make(map[string]map[string]float64, len(nodes))
	for _, n := range nodes {
		m := make(map[string]float64, len(n.Avail))
		for k, v := range n.Avail {
			m[k] = v
		}
		free[n.ID] = m
	}
	out = append([]string(nil), at...)
	count := map[string]int{} // bundles of the group per node
	for _, id := range at {
		if id != "" {
			count[id]++
		}
	}
	var todo []int
	for i, id := range at {
		if id == "" {
			todo = append(todo, i)
		}
	}
	// Larger bundles first: a greedy placement fails less often so.
	sort.SliceStable(todo, func(a, b int) bool { return size(bundles[todo[a]]) > size(bundles[todo[b]]) })
	if strategy == StrictPack || strategy == Pack {
		if id := packNode(bundles, todo, out, nodes, free); id != "" {
			for _, i := range todo {
				out[i] = id
			}
			return out, "", false
		}
		if strategy == StrictPack {
			return nil, "waiting for one node with " + describe(sum(bundles, todo)) + " free", false
		}
	}
	for _, i := range todo {
		best := ""
		for _, n := range nodes {
			if !fits(free[n.ID], bundles[i]) {
				continue
			}
			if strategy == StrictSpread && count[n.ID] > 0 {
				continue
			}
			if best == "" || better(strategy, n.ID, best, count, free) {
				best = n.ID
			}
		}
		if best == "" {
			return nil, fmt.Sprintf("waiting for a node with %s free for bundle %d", describe(bundles[i]), i), false
		}
		out[i] = best
		count[best]++
		take(free[best], bundles[i])
	}
	return out, "", false
}

// better reports whether node a is a better home than b for the next
// bundle: PACK prefers nodes the group is on already, SPREAD those it is
// on least; then the node with the most CPU free.
func better(strategy, a, b string, count map[string]int, free map[string]map[string]float64) bool {
	switch strategy {
	case Pack:
		if (count[a] > 0) != (count[b] > 0) {
			return count[a] > 0
		}
	case Spread:
		if count[a] != count[b] {
			return count[a] < count[b]
		}
	}
	return free[a]["CPU"] > free[b]["CPU"]
}

// packNode is a node that can hold all of todo (and, when some bundles are
// placed already, the one they are on), or "".
func packNode(bundles []map[string]float64, todo []int, at []string, nodes []Node, free map[string]map[string]float64) string {
	need := sum(bundles, todo)
	placed := ""
	for _, id := range at {
		if id != "" {
			placed = id
			break
		}
	}
	best := ""
	for _, n := range nodes {
		if placed != "" && n.ID != placed || !fits(free[n.ID], need) {
			continue
		}
		if best == "" || free[n.ID]["CPU"] > free[best]["CPU"] {
			best = n.ID
		}
	}
	return best
}

// feasible says why the bundles could never be placed on nodes, or "".
func feasible(strategy string, bundles []map[string]float64, at []string, nodes []Node) string {
	if len(nodes) == 0 {
		return "no node is alive"
	}
	for i, b := range bundles {
		if at[i] != "" {
			continue
		}
		ok := false
		for _, n := range nodes {
			if fits(n.Total, b) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("no node can ever hold bundle %d %s: the nodes have %s", i, describe(b), describeNodes(nodes))
		}
	}
	switch strategy {
	case StrictPack:
		all := make([]int, len(bundles))
		for i := range all {
			all[i] = i
		}
		need := sum(bundles, all)
		for _, n := range nodes {
			if fits(n.Total, need) {
				return ""
			}
		}
		return fmt.Sprintf("STRICT_PACK needs one node with %s: the nodes have %s", describe(need), describeNodes(nodes))
	case StrictSpread:
		if len(bundles) > len(nodes) {
			return fmt.Sprintf("STRICT_SPREAD needs %d nodes: the cluster has %d", len(bundles), len(nodes))
		}
	}
	return ""
}

func fits(m, need map[string]float64) bool {
	for k, v := range need {
		if m[k] < v-1e-9 {
			return false
		}
	}
	return true
}

func take(m, need map[string]float64) {
	for k, v := range need {
		m[k] -= v
	}
}

func sum(bundles []map[string]float64, which []int) map[string]float64 {
	out := map[string]float64{}
	for _, i := range which {
		for k, v := range bundles[i] {
			out[k] += v
		}
	}
	return out
}

func size(b map[string]float64) float64 {
	s := 0.0
	for _, v := range b {
		s += v
	}
	return s
}

func describe(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		if !IsGroupResource(k) {
			parts = append(parts, fmt.Sprintf("%s=%g", k, v))
		}
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

func describeNodes(nodes []Node) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = describe(n.Total)
	}
	return strings.Join(parts, ", ")
}
