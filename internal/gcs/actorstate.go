package gcs

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// The state table (tasks and actors, for the state API) lives in memory,
// but for the records of named and detached actors: those outlive the
// jobs that made them, so a restarted control store must still list them.
// They are kept in TableActors, each time they change.

// TableActors holds the state records of named and detached actors:
// hex actor ID -> ActorRecord.
const TableActors = "actors"

// maxDeadKept bounds the records of dead named or detached actors a
// control store loads back (the newest); it forgets the others.
const maxDeadKept = 1000

// reportEvents merges a batch of task and actor events, and keeps the
// records of the named and detached actors it changed.
func (s *Server) reportEvents(b *pb.StateEvents) {
	changed := s.state.Report(b)
	if len(changed) == 0 {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.keepActorsLocked(changed)
}

// keepActorsLocked writes the records of named and detached actors to the
// store. Each is read again from the state table under wmu, so that of two
// batches changing one actor the store ends with the later state, whatever
// order their writers took. wmu is held.
func (s *Server) keepActorsLocked(recs []*pb.ActorRecord) {
	for _, r := range recs {
		id := r.Actor.ActorId
		cur := s.state.Actors(&pb.StateQuery{Id: id})
		if len(cur.Actors) == 1 {
			r = cur.Actors[0]
		}
		_ = s.save(TableActors, hex.EncodeToString(id), r)
	}
}

// actorsOnDeadNodeLocked marks DEAD (NODE_DIED) the actors of a dead node
// that may not restart. wmu is held.
func (s *Server) actorsOnDeadNodeLocked(id ids.NodeID, rec *pb.NodeInfo) {
	why := fmt.Sprintf("its node %s died: %s", id.Name(), rec.DeathReason)
	s.keepActorsLocked(s.state.NodeDied(id.Name(), why, s.cfg.Now().UnixNano()))
}

// loadActors puts the kept records of named and detached actors back in
// the state table: all the living, and the newest maxDeadKept dead (the
// older ones are erased from the store).
func (s *Server) loadActors(ctx context.Context) error {
	var recs, dead []*pb.ActorRecord
	err := s.loadTable(ctx, TableActors, func() proto.Message { return &pb.ActorRecord{} }, func(_ string, m proto.Message) error {
		a := m.(*pb.ActorRecord)
		switch {
		case !tasktable.Durable(a):
			return fmt.Errorf("not an actor's record, or of an actor neither named nor detached")
		case a.Actor.State == tasktable.ActorDead:
			dead = append(dead, a)
		default:
			recs = append(recs, a)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(dead, func(i, j int) bool { return dead[i].Actor.TimeUnixNs > dead[j].Actor.TimeUnixNs })
	for _, a := range dead[min(len(dead), maxDeadKept):] {
		if err := s.erase(TableActors, hex.EncodeToString(a.Actor.ActorId)); err != nil {
			return err
		}
	}
	s.state.Restore(append(recs, dead[:min(len(dead), maxDeadKept)]...))
	return nil
}
