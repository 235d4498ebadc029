package transfer

import (
	"context"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// Stats counts what the Manager moved so far.
func (m *Manager) Stats() Stats {
	return Stats{Served: m.served.Load(), BytesIn: m.bytesIn.Load(), BytesOut: m.bytesOut.Load()}
}

// Copies lists the pulled copies in the store, oldest first.
func (m *Manager) Copies() []ids.ObjectID {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ids.ObjectID, 0, m.order.Len())
	for e := m.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(ids.ObjectID))
	}
	return out
}

// InFlight maps each object being pulled to how many Pulls wait for it.
func (m *Manager) InFlight() map[ids.ObjectID]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[ids.ObjectID]int, len(m.inflight))
	for id, pc := range m.inflight {
		out[id] = pc.waiters
	}
	return out
}

// Readers is how many connections this node served chunks of id to, that
// it would tell of its free.
func (m *Manager) Readers(id ids.ObjectID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.readers[id])
}

// Link is the pooled connection to the source raylet at addr, dialed if
// there is none or it broke.
func (m *Manager) Link(ctx context.Context, addr string) (*rpc.Conn, error) {
	_, l, err := m.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return l.conn, nil
}
