package autoscaler

import (
	"sort"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Shape is a resource shape: quantities by resource name.
type Shape map[string]float64

// shapeOf reads a shape from its resource list.
func shapeOf(res []*pb.Resource) Shape {
	m := make(Shape, len(res))
	for _, x := range res {
		m[x.Name] += x.Quantity
	}
	return m
}

// fits says whether s fits in free.
func (s Shape) fits(free Shape) bool {
	for k, v := range s {
		if v > 0 && free[k] < v-1e-9 {
			return false
		}
	}
	return true
}

// take subtracts s from free.
func (s Shape) take(free Shape) {
	for k, v := range s {
		free[k] -= v
	}
}

func (s Shape) clone() Shape {
	m := make(Shape, len(s))
	for k, v := range s {
		m[k] = v
	}
	return m
}

// size orders shapes for first-fit decreasing: GPUs, then CPUs, then the
// rest.
func (s Shape) size() (float64, float64, float64) {
	rest := 0.0
	for k, v := range s {
		if k != "CPU" && k != "GPU" {
			rest += v
		}
	}
	return s["GPU"], s["CPU"], rest
}

func bigger(a, b Shape) bool {
	a1, a2, a3 := a.size()
	b1, b2, b3 := b.size()
	if a1 != b1 {
		return a1 > b1
	}
	if a2 != b2 {
		return a2 > b2
	}
	return a3 > b3
}

// packInto places each shape, largest first, in the first bin it fits,
// taking from that bin, and returns the shapes that fit in none.
func packInto(bins []Shape, shapes []Shape) (unfit []Shape) {
	for _, s := range largestFirst(shapes) {
		if !takeFirstFit(bins, s) {
			unfit = append(unfit, s)
		}
	}
	return unfit
}

// largestFirst is a copy of shapes sorted largest first (stable).
func largestFirst(shapes []Shape) []Shape {
	sorted := append([]Shape(nil), shapes...)
	sort.SliceStable(sorted, func(i, j int) bool { return bigger(sorted[i], sorted[j]) })
	return sorted
}

// takeFirstFit takes s from the first bin it fits, and says whether one
// did.
func takeFirstFit(bins []Shape, s Shape) bool {
	for _, b := range bins {
		if s.fits(b) {
			s.take(b)
			return true
		}
	}
	return false
}

// plan is what to launch for shapes that fit no node there is: count new
// nodes by type, bin-packing the shapes (largest first) onto them. Each
// shape goes to a node already planned if it fits, else to a new node of
// the first type (in types' order) that fits it, while that type has room
// under its maximum (have counts the instances it has) and the cluster
// under maxWorkers (0: no cluster-wide bound). It returns the shapes no
// new node could take.
func plan(types []NodeType, have map[string]int, maxWorkers int, shapes []Shape) (launch map[string]int, unmet []Shape) {
	launch = map[string]int{}
	total := 0
	for _, n := range have {
		total += n
	}
	var bins []Shape
	for _, s := range largestFirst(shapes) {
		if takeFirstFit(bins, s) {
			continue
		}
		placed := false
		for _, t := range types {
			if !s.fits(t.Resources) || have[t.Name]+launch[t.Name] >= t.MaxWorkers || (maxWorkers > 0 && total >= maxWorkers) {
				continue
			}
			b := Shape(t.Resources).clone()
			s.take(b)
			bins = append(bins, b)
			launch[t.Name]++
			total++
			placed = true
			break
		}
		if !placed {
			unmet = append(unmet, s)
		}
	}
	return launch, unmet
}
