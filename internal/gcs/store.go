package gcs

import (
	"context"
	"maps"
	"sync"
)

// The tables the control store keeps in its Store. Each record is a
// protobuf message, except in TableBinaries, whose values are the
// executables themselves.
const (
	TableNodes    = "nodes"    // hex node ID -> NodeInfo
	TableJobs     = "jobs"     // job ID -> JobInfo
	TableBinaries = "binaries" // SHA-256 hex -> the executable's bytes
	TableNames    = "names"    // namespace and name -> ActorName
	TableKV       = "kv"       // namespace and key -> KVEntry
)

// Store is where the control store keeps its tables, so that they survive
// a restart: in each table, keys to bytes. Values are never modified once
// handed over, by the Store or by its caller, so an implementation may
// keep the slice it is given and return it as it is.
type Store interface {
	// Put sets key in table to value.
	Put(ctx context.Context, table, key string, value []byte) error
	// Get reads key in table; found is false when it is not there.
	Get(ctx context.Context, table, key string) (value []byte, found bool, err error)
	// Delete removes key from table; a missing key is no error.
	Delete(ctx context.Context, table, key string) error
	// List reads a whole table.
	List(ctx context.Context, table string) (map[string][]byte, error)
	// Close releases the store's connections.
	Close() error
}

// MemoryStore is a Store in the process's memory: the default, which
// lasts as long as the process (or as long as it is handed from one
// Server to the next in Config.Store).
type MemoryStore struct {
	mu     sync.Mutex // protects tables
	tables map[string]map[string][]byte
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{tables: make(map[string]map[string][]byte)}
}

// Put sets key in table to value, which it keeps without copying.
func (m *MemoryStore) Put(_ context.Context, table, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.tables[table]
	if t == nil {
		t = make(map[string][]byte)
		m.tables[table] = t
	}
	t[key] = value
	return nil
}

// Get reads key in table.
func (m *MemoryStore) Get(_ context.Context, table, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.tables[table][key]
	return v, ok, nil
}

// Delete removes key from table.
func (m *MemoryStore) Delete(_ context.Context, table, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tables[table], key)
	return nil
}

// List reads a whole table.
func (m *MemoryStore) List(_ context.Context, table string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.tables[table]))
	maps.Copy(out, m.tables[table])
	return out, nil
}

// Close does nothing: the tables stay, for a later Server to load.
func (m *MemoryStore) Close() error { return nil }

// A GuardedStore is a Store that can tell when it may have lost records
// written to it: a Redis server restarted empty (without persistence, or
// with its files gone), or writes that failed while it was down. The
// control store then writes its whole state back (see Server.writeBack).
type GuardedStore interface {
	Store
	// Intact reports whether the store still holds every record written
	// to it since the last Mark, as far as it can tell; an error means it
	// could not be asked (and then it is not intact either).
	Intact(ctx context.Context) (bool, error)
	// Mark records that the store now holds the whole state.
	Mark(ctx context.Context) error
}
