package placement

import (
	"strings"
	"testing"
)

func nodes(cpus ...float64) []Node {
	out := make([]Node, len(cpus))
	for i, c := range cpus {
		id := string(rune('a' + i))
		out[i] = Node{ID: id, Total: map[string]float64{"CPU": c}, Avail: map[string]float64{"CPU": c}}
	}
	return out
}

// busy takes cpus from what each node has free.
func busy(ns []Node, cpus float64) []Node {
	for _, n := range ns {
		n.Avail["CPU"] -= cpus
	}
	return ns
}

func bundles(cpus ...float64) []map[string]float64 {
	out := make([]map[string]float64, len(cpus))
	for i, c := range cpus {
		out[i] = map[string]float64{"CPU": c}
	}
	return out
}

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		strategy string
		bundles  []map[string]float64
		at       []string // nil: none placed
		nodes    []Node
		want     string // the nodes, joined; "" when it cannot
		reason   string // part of the reason when it cannot
		never    bool
	}{
		{"pack fits one node", Pack, bundles(1, 1), nil, nodes(1, 4), "bb", "", false},
		{"pack spills when it must", Pack, bundles(2, 2), nil, nodes(3, 3), "ab", "", false},
		{"strict pack waits rather than split", StrictPack, bundles(2, 2), nil, busy(nodes(4, 4), 1), "", "one node with {CPU=4} free", false},
		{"strict pack never fits", StrictPack, bundles(2, 2), nil, nodes(3, 2), "", "STRICT_PACK needs one node with {CPU=4}", true},
		{"spread uses every node", Spread, bundles(1, 1, 1), nil, nodes(2, 2, 2), "abc", "", false},
		{"spread doubles up when it must", Spread, bundles(1, 1, 1), nil, nodes(2, 1), "aba", "", false},
		{"strict spread", StrictSpread, bundles(1, 1), nil, nodes(1, 1, 1), "ab", "", false},
		{"strict spread needs nodes", StrictSpread, bundles(1, 1, 1), nil, nodes(4, 4), "", "STRICT_SPREAD needs 3 nodes", true},
		{"bundle too big", Pack, bundles(8), nil, nodes(4, 4), "", "no node can ever hold bundle 0 {CPU=8}", true},
		{"keeps placed bundles, spreads the lost one", StrictSpread, bundles(1, 1, 1), []string{"a", "", "c"}, nodes(1, 1, 1), "abc", "", false},
		{"strict pack follows placed bundles", StrictPack, bundles(1, 1), []string{"b", ""}, nodes(4, 2), "bb", "", false},
		{"no nodes", Pack, bundles(1), nil, nil, "", "no node is alive", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.at
			if at == nil {
				at = make([]string, len(tc.bundles))
			}
			out, reason, never := Place(tc.strategy, tc.bundles, at, tc.nodes)
			if got := strings.Join(out, ""); got != tc.want {
				t.Fatalf("placed on %q (%s), want %q", got, reason, tc.want)
			}
			if tc.want == "" && (!strings.Contains(reason, tc.reason) || never != tc.never) {
				t.Fatalf("reason %q never=%v, want %q never=%v", reason, never, tc.reason, tc.never)
			}
		})
	}
}

func TestPlaceTakesWhatItPlaces(t *testing.T) {
	// Four 1-CPU bundles over two 2-CPU nodes: two each, whatever the order.
	out, reason, _ := Place(Spread, bundles(1, 1, 1, 1), make([]string, 4), nodes(2, 2))
	count := map[string]int{}
	for _, n := range out {
		count[n]++
	}
	if count["a"] != 2 || count["b"] != 2 {
		t.Fatalf("placed %v (%s)", out, reason)
	}
	if out, _, _ := Place(Pack, bundles(1, 1, 1), make([]string, 3), nodes(1, 1)); out != nil {
		t.Fatalf("three CPUs on two: %v", out)
	}
}

func TestDemandAndBundleResources(t *testing.T) {
	added := BundleResources(map[string]float64{"CPU": 2}, "g1", 0)
	task := Demand(map[string]float64{"CPU": 1}, "g1", 0)
	for k, v := range task {
		if added[k] < v {
			t.Errorf("a task in bundle 0 asks for %g of %s, the bundle adds %g", v, k, added[k])
		}
		if !IsGroupResource(k) || !OfGroup(k, "g1") || OfGroup(k, "g2") {
			t.Errorf("%s: not recognised as group g1's", k)
		}
	}
	if _, ok := Demand(map[string]float64{"CPU": 1}, "g1", 1)[Resource("CPU", "g1", 1)]; !ok {
		t.Error("a task in bundle 1 does not ask for bundle 1")
	}
	any := Demand(nil, "g1", -1)
	if len(any) != 1 || any[Resource(bundleMarker, "g1", -1)] == 0 {
		t.Errorf("a task that needs nothing, in any bundle: %v", any)
	}
}
