package gcs

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// What the control store learns of an actor other than from its owner's
// batched events, which come every 200 ms and never from an owner that
// died before it sent them:
//
//   - At its name's registration, made by the owner before the actor
//     runs: that it is named, detached, of which job and class. A detached
//     actor is then spared its job's end from the start.
//   - When a node registers (again, after a restart of the control store
//     without Redis): the actors its live workers host, which the new
//     control store lists, and finds by name, again.

// ErrBadHostedActor is a node registration whose hosted actors lack what
// the control store needs of them.
var ErrBadHostedActor = errors.New("gcs: node registration: bad hosted actor")

// registeredEvent is the state record an actor's name registration makes
// of it: PENDING_CREATION, at time at, with its options.
func registeredEvent(a *pb.ActorName, at int64) *pb.ActorEvent {
	return &pb.ActorEvent{
		ActorId: a.ActorId, State: tasktable.ActorPending, TimeUnixNs: at,
		ClassName: a.ClassName, Name: a.Name, Namespace: a.Namespace, JobId: a.JobId,
		Detached: a.Detached, MaxRestarts: a.MaxRestarts,
	}
}

// actorRegisteredLocked records in the state table an actor whose name
// was just registered. wmu is held.
func (s *Server) actorRegisteredLocked(a *pb.ActorName) {
	ev := registeredEvent(a, s.cfg.Now().UnixNano())
	s.keepActorsLocked(s.state.Report(&pb.StateEvents{Actors: []*pb.ActorEvent{ev}}))
}

// checkHosted says what is wrong with a node's hosted actors, if anything.
func checkHosted(hosted []*pb.HostedActor) error {
	for i, h := range hosted {
		if err := CheckHostedActor(h); err != nil {
			return fmt.Errorf("%w %d: %w", ErrBadHostedActor, i, err)
		}
	}
	return nil
}

// CheckHostedActor says what is wrong with a hosted actor a node would
// report, if anything: it needs its description and state, with one
// valid actor ID, ALIVE or PENDING_CREATION, and a name if detached. A
// node leaves out those it cannot report right (their owner described
// them wrong), rather than have its registration refused.
func CheckHostedActor(h *pb.HostedActor) error {
	switch {
	case h.GetActor() == nil || h.GetState() == nil:
		return errors.New("it needs both its description and its state")
	case len(h.Actor.ActorId) != ids.TaskIDLen:
		return fmt.Errorf("actor ID of %d bytes, want %d", len(h.Actor.ActorId), ids.TaskIDLen)
	case len(h.State.ActorId) != 0 && string(h.State.ActorId) != string(h.Actor.ActorId):
		return errors.New("its state is of another actor")
	case h.State.State != tasktable.ActorAlive && h.State.State != tasktable.ActorPending:
		return fmt.Errorf("state %q, want %s or %s", h.State.State, tasktable.ActorAlive, tasktable.ActorPending)
	case h.Actor.Name == "" && h.Actor.Detached:
		return errors.New("detached without a name")
	}
	return nil
}

// hostedLocked takes back the actors a registering node hosts (checked by
// checkHosted): their state records, unless the table knows better (a
// DEAD actor stays dead), and their names, unless taken. wmu is held.
func (s *Server) hostedLocked(hosted []*pb.HostedActor) {
	if len(hosted) == 0 {
		return
	}
	evs := make([]*pb.ActorEvent, 0, len(hosted))
	for _, h := range hosted {
		a := h.Actor
		ev := proto.Clone(h.State).(*pb.ActorEvent)
		ev.ActorId = a.ActorId
		ev.Name, ev.Namespace, ev.Detached = a.Name, a.Namespace, a.Detached
		if ev.ClassName == "" {
			ev.ClassName = a.ClassName
		}
		if ev.JobId == "" {
			ev.JobId = a.JobId
		}
		// Its options (MaxRestarts: whether its node's death ends it)
		// come with a PENDING_CREATION record, as at its registration.
		evs = append(evs, registeredEvent(a, ev.TimeUnixNs), ev)
		if a.Name != "" {
			s.nameHostedLocked(a)
		}
	}
	s.keepActorsLocked(s.state.Report(&pb.StateEvents{Actors: evs}))
}

// nameHostedLocked gives a hosted actor its name back, unless another
// actor holds it; the one that holds it already learns where it runs, if
// it did not know. wmu is held.
func (s *Server) nameHostedLocked(a *pb.ActorName) {
	cur, err := s.names.Lookup(a.Namespace, a.Name)
	switch {
	case err != nil:
		a = proto.Clone(a).(*pb.ActorName)
		if s.save(TableNames, storeKey(a.Namespace, a.Name), a) == nil {
			_ = s.names.Register(a)
		}
	case string(cur.ActorId) == string(a.ActorId) && cur.WorkerAddr == "" && a.WorkerAddr != "":
		cur = proto.Clone(cur).(*pb.ActorName)
		cur.WorkerAddr = a.WorkerAddr
		if s.save(TableNames, storeKey(cur.Namespace, cur.Name), cur) == nil {
			s.names.SetWorker(a.ActorId, a.WorkerAddr)
		}
	}
}
