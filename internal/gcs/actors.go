package gcs

import (
	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// registerName names an actor, once the store has the name, and lists
// it in the state table (see actorRegisteredLocked).
func (s *Server) registerName(a *pb.ActorName) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.names.Taken(a.Namespace, a.Name); err != nil {
		return err
	}
	if err := s.save(TableNames, storeKey(a.Namespace, a.Name), a); err != nil {
		return err
	}
	if err := s.names.Register(a); err != nil {
		return err
	}
	s.actorRegisteredLocked(a)
	return nil
}

// actorAlive records where an actor runs. The table changes even if the
// store cannot be written (a notification has nobody to tell).
func (s *Server) actorAlive(actorID []byte, workerAddr string) {
	if len(actorID) == 0 {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, a := range s.names.Of(actorID) {
		a = proto.Clone(a).(*pb.ActorName)
		a.WorkerAddr = workerAddr
		_ = s.save(TableNames, storeKey(a.Namespace, a.Name), a)
	}
	s.names.SetWorker(actorID, workerAddr)
}

// actorGone frees the names of an actor that is gone.
func (s *Server) actorGone(actorID []byte) {
	if len(actorID) == 0 {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, a := range s.names.Of(actorID) {
		_ = s.erase(TableNames, storeKey(a.Namespace, a.Name))
	}
	s.names.Remove(actorID)
}
