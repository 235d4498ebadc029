// Package gcs is the control store: the cluster-wide tables that are not
// on the task path — nodes, jobs and their executables, named actors and
// a key-value store — kept in memory or, to survive a restart, in Redis
// (see Store). An embedded cluster keeps its named actors in the raylet
// of the driver process, in a Names table.
package gcs

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Errors of the control store.
var (
	ErrNameTaken  = errors.New("gcs: an actor already has this name")
	ErrNoSuchName = errors.New("gcs: no actor has this name")
)

type nameKey struct{ namespace, name string }

// Names maps actor names, per namespace, to actors. The records it hands
// out are never changed afterwards (a change replaces the record), so
// they may be read, but must not be modified, without a lock.
type Names struct {
	mu    sync.Mutex // protects names
	names map[nameKey]*pb.ActorName
}

// NewNames returns an empty table.
func NewNames() *Names { return &Names{names: make(map[nameKey]*pb.ActorName)} }

// Register names an actor; a name is taken once per namespace.
func (n *Names) Register(a *pb.ActorName) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := nameKey{a.Namespace, a.Name}
	if _, ok := n.names[k]; ok {
		return takenError(a.Namespace, a.Name)
	}
	n.names[k] = a
	return nil
}

func takenError(namespace, name string) error {
	return fmt.Errorf("%w: %q in namespace %q", ErrNameTaken, name, namespace)
}

// Taken is an ErrNameTaken error if the name is taken in namespace, else nil.
func (n *Names) Taken(namespace, name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.names[nameKey{namespace, name}]; ok {
		return takenError(namespace, name)
	}
	return nil
}

// Lookup finds a named actor.
func (n *Names) Lookup(namespace, name string) (*pb.ActorName, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.names[nameKey{namespace, name}]
	if a == nil {
		return nil, fmt.Errorf("%w: %q in namespace %q", ErrNoSuchName, name, namespace)
	}
	return a, nil
}

// Of lists the names of the actor with the given ID.
func (n *Names) Of(actorID []byte) []*pb.ActorName {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*pb.ActorName
	for _, a := range n.names {
		if string(a.ActorId) == string(actorID) {
			out = append(out, a)
		}
	}
	return out
}

// Remove forgets every name of the actor with the given ID.
func (n *Names) Remove(actorID []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, a := range n.names {
		if string(a.ActorId) == string(actorID) {
			delete(n.names, k)
		}
	}
}

// SetWorker records where a (detached) actor runs, so that it can be
// reached after its creator is gone.
func (n *Names) SetWorker(actorID []byte, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, a := range n.names {
		if string(a.ActorId) == string(actorID) {
			a = proto.Clone(a).(*pb.ActorName)
			a.WorkerAddr = addr
			n.names[k] = a
		}
	}
}
