package node

import (
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
// embedded cluster's, or the node's a driver joins.
func prefaultStore(a *objstore.Arena) {
	a.PrefaultWhenQuiet(rpc.Activity) // not while the driver talks
	a.PrefaultAhead(min(driverPrefaultWindow, a.Capacity()/4))
}
