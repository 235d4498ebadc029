package gcs

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// loadTimeout bounds reading the tables back at start.
const loadTimeout = 5 * time.Minute

// load reads the tables back from the store. Nodes that were alive stay
// alive, their heartbeat clock restarted, so that they have HealthTimeout
// to reach the new control store.
func (s *Server) load() ([]*pb.PlacementGroup, error) {
	ctx, cancel := context.WithTimeout(s.ctx, loadTimeout)
	defer cancel()
	now := s.cfg.Now().UnixMilli()
	err := s.loadTable(ctx, TableNodes, func() proto.Message { return &pb.NodeInfo{} }, func(_ string, m proto.Message) error {
		n := m.(*pb.NodeInfo)
		id, err := ids.NodeIDFrom(n.NodeId)
		if err != nil {
			return fmt.Errorf("node ID: %w", err)
		}
		if n.State == StateAlive {
			n.LastHeartbeatUnixMs = now
		} else {
			n.Available, n.Pending = nil, nil // a dead node's are gone with it
		}
		s.nodes[id] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.loadTable(ctx, TableJobs, func() proto.Message { return &pb.JobInfo{} }, func(_ string, m proto.Message) error {
		j := m.(*pb.JobInfo)
		s.jobs[j.JobId] = j
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.loadTable(ctx, TableNames, func() proto.Message { return &pb.ActorName{} }, func(_ string, m proto.Message) error {
		return s.names.Register(m.(*pb.ActorName))
	})
	if err != nil {
		return nil, err
	}
	err = s.loadTable(ctx, TableKV, func() proto.Message { return &pb.KVEntry{} }, func(_ string, m proto.Message) error {
		e := m.(*pb.KVEntry)
		s.kv[kvKey{e.Namespace, e.Key}] = e.Value
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.loadActors(ctx); err != nil {
		return nil, err
	}
	var groups []*pb.PlacementGroup
	err = s.loadTable(ctx, TablePlacementGroups, func() proto.Message { return &pb.PlacementGroup{} }, func(_ string, m proto.Message) error {
		groups = append(groups, m.(*pb.PlacementGroup))
		return nil
	})
	if err != nil {
		return nil, err
	}
	bins, err := s.store.List(ctx, TableBinaries)
	if err != nil {
		return nil, fmt.Errorf("gcs: load %s: %w", TableBinaries, err)
	}
	for hash, b := range bins {
		if got := hashOf(b); got != hash {
			return nil, fmt.Errorf("gcs: load %s: %s holds bytes that hash to %s", TableBinaries, hash, got)
		}
		s.binaries[hash] = b
	}
	return groups, nil
}

// loadTable decodes every record of a table with a message from newMsg
// and hands it to add.
func (s *Server) loadTable(ctx context.Context, table string, newMsg func() proto.Message, add func(key string, m proto.Message) error) error {
	recs, err := s.store.List(ctx, table)
	if err != nil {
		return fmt.Errorf("gcs: load %s: %w", table, err)
	}
	for k, b := range recs {
		m := newMsg()
		if err := proto.Unmarshal(b, m); err != nil {
			return fmt.Errorf("gcs: load %s record %q: %w", table, k, err)
		}
		if err := add(k, m); err != nil {
			return fmt.Errorf("gcs: load %s record %q: %w", table, k, err)
		}
	}
	return nil
}
