package transfer

import "github.com/rayo-dev/rayo/internal/ids"

// Adopt makes the pulled copy of id a primary of this node, as if made
// here: it is no longer evicted to make room (it spills instead, like any
// primary). A task run again on this node whose result was pulled here
// before takes the copy as its own. It reports whether id was a pulled
// copy.
func (m *Manager) Adopt(id ids.ObjectID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.pulled[id]
	if e == nil {
		return false
	}
	m.order.Remove(e)
	delete(m.pulled, id)
	return true
}
