package node

import (
	"sync/atomic"

	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// driverPrefaultWindow is how much of the node's store a driver keeps
// mapped ahead of its puts (a quarter of the store at most), from Init
// on, on CPU time nothing else wants: the objects it puts, which the
// store places there, land on pages already mapped and are written at
// memcpy speed instead of faulting every page (see
// objstore.Arena.PrefaultAhead).
const driverPrefaultWindow = 256 << 20

// prefaultStore arms the driver's prefault window of store a: the
// embedded cluster's, or the node's a driver joins. The window is mapped
// while the driver exchanges no messages, calls counts no call of the
// runtime (a loop of small puts or of gets of a ready value exchanges
// none, and is not quiet) and, when busy is given, while it reports
// false: page faults taken then would slow what the driver is doing.
func prefaultStore(a *objstore.Arena, calls func() uint64, busy func() bool) {
	a.PrefaultWhenQuiet(quietUnless(busy, rpc.Activity, calls))
	a.PrefaultAhead(min(driverPrefaultWindow, a.Capacity()/4))
}

// quietUnless is a count that grows with each of counts, and on every
// look while busy (if not nil) says so.
func quietUnless(busy func() bool, counts ...func() uint64) func() uint64 {
	var ticks atomic.Uint64
	return func() uint64 {
		if busy != nil && busy() {
			ticks.Add(1)
		}
		sum := ticks.Load()
		for _, c := range counts {
			sum += c()
		}
		return sum
	}
}
