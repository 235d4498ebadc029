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
// while the driver exchanges no messages and, when busy is given, while
// it reports false: page faults taken then would slow what the driver is
// waiting for.
func prefaultStore(a *objstore.Arena, busy func() bool) {
	a.PrefaultWhenQuiet(quietUnless(rpc.Activity, busy))
	a.PrefaultAhead(min(driverPrefaultWindow, a.Capacity()/4))
}

// quietUnless is activity, made to move on every look while busy says so.
func quietUnless(activity func() uint64, busy func() bool) func() uint64 {
	if busy == nil {
		return activity
	}
	var ticks atomic.Uint64
	return func() uint64 {
		if busy() {
			ticks.Add(1)
		}
		return activity() + ticks.Load()
	}
}
