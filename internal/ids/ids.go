// Package ids defines the identifiers of tasks, objects, workers and nodes.
//
// A TaskID is a 8-byte process prefix (random, fixed for the life of the
// process) followed by an 8-byte counter, so new IDs cost an atomic add. An
// ObjectID is the TaskID that creates the object followed by a 4-byte index:
// return values of a task count from 1, objects made by Put use the put
// counter of the process as the task part and index 0.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync/atomic"
)

// TaskIDLen and ObjectIDLen are the sizes of the identifiers in bytes.
const (
	TaskIDLen   = 16
	ObjectIDLen = TaskIDLen + 4
)

// TaskID identifies one task (all of its attempts).
type TaskID [TaskIDLen]byte

// ObjectID identifies one immutable object.
type ObjectID [ObjectIDLen]byte

// WorkerID identifies one worker process.
type WorkerID [16]byte

// NodeID identifies one node (one raylet).
type NodeID [16]byte

var (
	prefix  [8]byte
	counter atomic.Uint64
)

func init() {
	if _, err := rand.Read(prefix[:]); err != nil {
		panic("ids: no randomness: " + err.Error())
	}
}

// NewTaskID returns a TaskID unique across processes.
func NewTaskID() TaskID {
	var t TaskID
	copy(t[:8], prefix[:])
	binary.BigEndian.PutUint64(t[8:], counter.Add(1))
	return t
}

// NewWorkerID returns a random WorkerID.
func NewWorkerID() WorkerID {
	var w WorkerID
	_, _ = rand.Read(w[:])
	return w
}

// NewNodeID returns a random NodeID.
func NewNodeID() NodeID {
	var n NodeID
	_, _ = rand.Read(n[:])
	return n
}

// ForReturn is the ObjectID of return value i (counting from 0) of task t.
func ForReturn(t TaskID, i int) ObjectID {
	var o ObjectID
	copy(o[:], t[:])
	binary.BigEndian.PutUint32(o[TaskIDLen:], uint32(i)+1)
	return o
}

// ForPut returns a fresh ObjectID for an object made by Put.
func ForPut() ObjectID {
	var o ObjectID
	copy(o[:], prefix[:])
	binary.BigEndian.PutUint64(o[8:], counter.Add(1))
	return o
}

// Task is the task that created o.
func (o ObjectID) Task() TaskID {
	var t TaskID
	copy(t[:], o[:TaskIDLen])
	return t
}

// Index is the return index of o (0 for objects made by Put).
func (o ObjectID) Index() int { return int(binary.BigEndian.Uint32(o[TaskIDLen:])) }

// IsNil reports whether o is the zero ObjectID.
func (o ObjectID) IsNil() bool { return o == ObjectID{} }

func (o ObjectID) String() string { return hex.EncodeToString(o[:]) }
func (t TaskID) String() string   { return hex.EncodeToString(t[:]) }
func (w WorkerID) String() string { return hex.EncodeToString(w[:]) }
func (n NodeID) String() string   { return hex.EncodeToString(n[:]) }

// Name is the node's ID as users see it (rayo.NodeID, NodeAffinity): the
// first 12 hex digits.
func (n NodeID) Name() string { return n.String()[:12] }

// ErrBadID reports an identifier of the wrong length.
var ErrBadID = errors.New("ids: wrong identifier length")

// ObjectIDFrom copies b into an ObjectID.
func ObjectIDFrom(b []byte) (ObjectID, error) {
	var o ObjectID
	if len(b) != ObjectIDLen {
		return o, ErrBadID
	}
	copy(o[:], b)
	return o, nil
}

// TaskIDFrom copies b into a TaskID.
func TaskIDFrom(b []byte) (TaskID, error) {
	var t TaskID
	if len(b) != TaskIDLen {
		return t, ErrBadID
	}
	copy(t[:], b)
	return t, nil
}

// WorkerIDFrom copies b into a WorkerID.
func WorkerIDFrom(b []byte) (WorkerID, error) {
	var w WorkerID
	if len(b) != len(w) {
		return w, ErrBadID
	}
	copy(w[:], b)
	return w, nil
}

// NodeIDFrom copies b into a NodeID.
func NodeIDFrom(b []byte) (NodeID, error) {
	var n NodeID
	if len(b) != len(n) {
		return n, ErrBadID
	}
	copy(n[:], b)
	return n, nil
}

// PlacementGroupID names a placement group.
type PlacementGroupID [16]byte

// NewPlacementGroupID returns a random PlacementGroupID.
func NewPlacementGroupID() PlacementGroupID {
	var g PlacementGroupID
	_, _ = rand.Read(g[:])
	return g
}

func (g PlacementGroupID) String() string { return hex.EncodeToString(g[:]) }

// PlacementGroupIDFrom copies b into a PlacementGroupID.
func PlacementGroupIDFrom(b []byte) (PlacementGroupID, error) {
	var g PlacementGroupID
	if len(b) != len(g) {
		return g, ErrBadID
	}
	copy(g[:], b)
	return g, nil
}
