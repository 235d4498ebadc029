package gcs

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Durability: the control store's memory holds the whole state, and its
// Store a copy. A Store that can tell it lost records (a GuardedStore:
// Redis restarted empty, or down while writes failed) is checked every
// guardInterval; when it is not intact, the control store writes every
// table back from memory, removing what it no longer holds, and marks the
// store again. A control store started later on that Redis then loads
// everything, as if Redis had never lost it.

// guardInterval is how often a GuardedStore is checked.
const guardInterval = time.Second

// foreignTables are tables of the store that other parts of the head write
// (internal/node keeps the cluster's CA in "tls"): the control store keeps
// a copy of them, read while the store is intact, to write back too.
var foreignTables = []string{"tls"}

// durability is what the control store knows of whether its store kept
// its data.
type durability struct {
	writeBacks atomic.Int64 // whole-state write-backs done
	// foreign is the last copy of foreignTables read (guarded by wmu).
	foreign map[string]map[string][]byte
}

// WriteBacks counts how often the control store wrote its whole state
// back to a store that had lost records.
func (s *Server) WriteBacks() int64 { return s.durability.writeBacks.Load() }

// startGuard marks a GuardedStore once the tables are loaded and checks it
// every guardInterval until Close.
func (s *Server) startGuard() error {
	gs, ok := s.store.(GuardedStore)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	s.wmu.Lock()
	s.readForeignLocked(ctx)
	s.wmu.Unlock()
	if err := gs.Mark(ctx); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(guardInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.checkStore(gs)
			}
		}
	}()
	return nil
}

// checkStore writes the whole state back if the store lost records.
func (s *Server) checkStore(gs GuardedStore) {
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	intact, err := gs.Intact(ctx)
	if err != nil {
		return // unreachable: asked again at the next tick
	}
	if intact {
		s.wmu.Lock()
		s.readForeignLocked(ctx)
		s.wmu.Unlock()
		return
	}
	if s.writeBack(ctx) == nil && gs.Mark(ctx) == nil {
		s.durability.writeBacks.Add(1)
	}
}

// readForeignLocked refreshes the copy of foreignTables. The caller holds
// wmu.
func (s *Server) readForeignLocked(ctx context.Context) {
	if s.durability.foreign == nil {
		s.durability.foreign = make(map[string]map[string][]byte)
	}
	for _, table := range foreignTables {
		if recs, err := s.store.List(ctx, table); err == nil && len(recs) > 0 {
			s.durability.foreign[table] = recs
		}
	}
}

// snapshotLocked is every record the control store's tables hold, as
// they are written to the store: table, then key. The caller holds wmu,
// so no change is half made.
func (s *Server) snapshotLocked() (map[string]map[string][]byte, error) {
	snap := map[string]map[string][]byte{
		TableNodes: {}, TableJobs: {}, TableBinaries: {}, TableNames: {}, TableKV: {}, TablePlacementGroups: {}, TableActors: {},
	}
	add := func(table, key string, m proto.Message) error {
		b, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("gcs: encode %s record %q: %w", table, key, err)
		}
		snap[table][key] = b
		return nil
	}
	var err error
	s.mu.Lock()
	for id, n := range s.nodes {
		err = firstErr(err, add(TableNodes, id.String(), n))
	}
	for id, j := range s.jobs {
		err = firstErr(err, add(TableJobs, id, j))
	}
	for hash, b := range s.binaries {
		snap[TableBinaries][hash] = b
	}
	for k, v := range s.kv {
		err = firstErr(err, add(TableKV, storeKey(k.namespace, k.key), &pb.KVEntry{Namespace: k.namespace, Key: k.key, Value: v}))
	}
	s.mu.Unlock()
	for _, a := range s.names.all() {
		err = firstErr(err, add(TableNames, storeKey(a.Namespace, a.Name), a))
	}
	for _, a := range s.state.Actors(&pb.StateQuery{}).Actors {
		if tasktable.Durable(a) {
			err = firstErr(err, add(TableActors, hex.EncodeToString(a.Actor.ActorId), a))
		}
	}
	for _, g := range s.groups.List() {
		if g.State != placement.StateRemoved {
			err = firstErr(err, add(TablePlacementGroups, hex.EncodeToString(g.PlacementGroupId), g))
		}
	}
	for table, recs := range s.durability.foreign {
		snap[table] = recs
	}
	return snap, err
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// writeBack writes the whole state to the store: every record the tables
// hold, and the removal of any record they do not.
func (s *Server) writeBack(ctx context.Context) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	snap, err := s.snapshotLocked()
	if err != nil {
		return err
	}
	for table, recs := range snap {
		old, err := s.store.List(ctx, table)
		if err != nil {
			return fmt.Errorf("gcs: write back %s: %w", table, err)
		}
		for key := range old {
			if _, ok := recs[key]; !ok {
				if err := s.store.Delete(ctx, table, key); err != nil {
					return fmt.Errorf("gcs: write back %s: %w", table, err)
				}
			}
		}
		for key, b := range recs {
			if err := s.store.Put(ctx, table, key, b); err != nil {
				return fmt.Errorf("gcs: write back %s: %w", table, err)
			}
		}
	}
	return nil
}

// all lists every name.
func (n *Names) all() []*pb.ActorName {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*pb.ActorName, 0, len(n.names))
	for _, a := range n.names {
		out = append(out, a)
	}
	return out
}
