package transfer

import "github.com/rayo-dev/rayo/internal/ids"

// Keep makes the copy of id in the store a primary one: no longer a
// pulled copy evicted when room is short (the raylet spills it instead).
// A node taking over the objects of a node being drained keeps what it
// pulled. It reports false when id is not in the store (an eviction took
// the pulled copy first).
func (m *Manager) Keep(id ids.ObjectID) bool {
	// Under m.mu, as evictions are: none takes it between the look and
	// the change.
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, _, ok := m.cfg.Store.Lookup(id); !ok {
		return false
	}
	if e := m.pulled[id]; e != nil {
		m.order.Remove(e)
		delete(m.pulled, id)
	}
	return true
}
