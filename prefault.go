package rayo

import "github.com/rayo-dev/rayo/internal/objstore"

// driverPrefaultWindow is how much of the node's store a driver keeps
// mapped ahead of its puts (a quarter of the store at most), once it has
// put an object in the store: the next objects, which the store places
// beyond that one, land on pages already mapped and are written at memcpy
// speed instead of faulting every page (see objstore.Arena.PrefaultAhead).
const driverPrefaultWindow = 256 << 20

// prefaultStore arms the driver's prefault window of store a.
func prefaultStore(a *objstore.Arena) {
	a.PrefaultAhead(min(driverPrefaultWindow, a.Capacity()/4))
}
