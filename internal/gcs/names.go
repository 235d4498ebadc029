// Package gcs is the control store: the cluster-wide tables that are not
// on the task path. For now it holds named actors; an embedded cluster
// serves it from the raylet in the driver process.
package gcs

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Errors of the control store.
var (
	ErrNameTaken  = errors.New("gcs: an actor already has this name")
	ErrNoSuchName = errors.New("gcs: no actor has this name")
)

type nameKey struct{ namespace, name string }

// Names maps actor names, per namespace, to actors.
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
		return fmt.Errorf("%w: %q in namespace %q", ErrNameTaken, a.Name, a.Namespace)
	}
	n.names[k] = a
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
	for _, a := range n.names {
		if string(a.ActorId) == string(actorID) {
			a.WorkerAddr = addr
		}
	}
}
