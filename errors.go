package rayo

import (
	"errors"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
)

// Errors returned by rayo. Failures of tasks come as *TaskError, which
// matches the sentinel of its kind with errors.Is.
var (
	// ErrNotInitialized: a call that needs the runtime came before Init.
	ErrNotInitialized = core.ErrNotInitialized
	// ErrAlreadyInitialized: Init was called twice.
	ErrAlreadyInitialized = errors.New("rayo: already initialized")
	// ErrShutdown: the runtime was shut down.
	ErrShutdown = core.ErrShutdown
	// ErrObjectFreed: the object was released and is gone.
	ErrObjectFreed = core.ErrObjectFreed
	// ErrWorkerDied: the worker running the task died, past its retries.
	ErrWorkerDied = core.ErrWorkerDied
	// ErrTaskCancelled: the task was cancelled (Cancel).
	ErrTaskCancelled = core.ErrTaskCancelled
	// ErrUnknownFunction: the worker does not have the function, which
	// was declared after Init or not at package level.
	ErrUnknownFunction = core.ErrUnknownFunction
	// ErrStoreFull: the object does not fit in the object store, even
	// after spilling.
	ErrStoreFull = core.ErrStoreFull
	// ErrInfeasible: no node can ever give the task the resources it asks
	// (with an autoscaler: no node there is nor any node type it can add).
	ErrInfeasible = core.ErrInfeasible
	// ErrObjectLost: the object's only copy went with its node and could
	// not be made again.
	ErrObjectLost = core.ErrObjectLost
	// ErrNilRef: a zero Ref was used.
	ErrNilRef = core.ErrNilRef
	// ErrTaskFailed is matched by every *TaskError.
	ErrTaskFailed = core.ErrTaskFailed
	// ErrTypeMismatch: a value, actor or function is not of the type the
	// call expects.
	ErrTypeMismatch = core.ErrTypeMismatch
	// ErrOwnerDied: the process that owned the object is gone.
	ErrOwnerDied = core.ErrOwnerDied
	// ErrActorDied: the actor is dead, past its restarts.
	ErrActorDied = core.ErrActorDied
	// ErrUnserializable: a value cannot be sent whole (a channel, a
	// function, an unexported field).
	ErrUnserializable = codec.ErrUnserializable
	// ErrNotSupported: the call is not supported yet.
	ErrNotSupported = errors.New("rayo: not supported yet")
	// ErrOutOfMemory: the node's memory monitor killed the task's worker
	// more often than the task's retries allow (see MemoryUsageThreshold).
	ErrOutOfMemory = core.ErrOutOfMemory
	// ErrPlacementGroupRemoved: the group was removed (by Remove, or
	// because the job that made it ended).
	ErrPlacementGroupRemoved = errors.New("rayo: placement group removed")
	// ErrUnknownPlacementGroup: no group has this ID or name.
	ErrUnknownPlacementGroup = errors.New("rayo: unknown placement group")
	// ErrNodeFenced: the node this process runs on was declared dead by
	// the cluster, which retries its work elsewhere, and stopped (it was
	// fenced). Every call of the process fails with it from then on; the
	// error names the node and the cause. It matches ErrShutdown too.
	ErrNodeFenced = core.ErrNodeFenced
	// ErrNoDashboard means the cluster has no API server to ask
	// (DashboardPort(0), or rayo start --dashboard-port 0).
	ErrNoDashboard = errors.New("rayo: the cluster has no API server (dashboard)")
)

// ErrorKind says what stopped a task; it is TaskError.Kind. Each kind but
// KindApp, KindPanic and KindSystem matches a sentinel with errors.Is.
type ErrorKind string

// The kinds of TaskError, as the runtime names them.
const (
	// KindApp: the function returned an error.
	KindApp ErrorKind = "app"
	// KindPanic: the function panicked.
	KindPanic ErrorKind = "panic"
	// KindWorkerDied: its worker died, past the task's retries
	// (ErrWorkerDied).
	KindWorkerDied ErrorKind = "worker_died"
	// KindCancelled: it was cancelled (ErrTaskCancelled).
	KindCancelled ErrorKind = "cancelled"
	// KindUnknownFunction: the worker does not have the function
	// (ErrUnknownFunction).
	KindUnknownFunction ErrorKind = "unknown_function"
	// KindTypeMismatch: an argument or the function is not of the type
	// the call expects (ErrTypeMismatch).
	KindTypeMismatch ErrorKind = "type"
	// KindStoreFull: its result or an argument did not fit in the object
	// store (ErrStoreFull).
	KindStoreFull ErrorKind = "store_full"
	// KindInfeasible: no node can give it its resources (ErrInfeasible).
	KindInfeasible ErrorKind = "infeasible"
	// KindOwnerDied: the owner of an argument is gone (ErrOwnerDied).
	KindOwnerDied ErrorKind = "owner_died"
	// KindSystem: another failure of the system, such as an argument that
	// could not be read.
	KindSystem ErrorKind = "system"
	// KindActorDied: its actor is dead (ErrActorDied).
	KindActorDied ErrorKind = "actor_died"
	// KindObjectLost: an object it needs is lost and could not be made
	// again (ErrObjectLost).
	KindObjectLost ErrorKind = "object_lost"
	// KindOutOfMemory: killed by the node's memory monitor
	// (ErrOutOfMemory).
	KindOutOfMemory ErrorKind = "out_of_memory"
	// KindUnserializable: its result cannot be sent whole
	// (ErrUnserializable).
	KindUnserializable ErrorKind = "unserializable"
	// KindNodeFenced: its owner's node was declared dead by the cluster
	// and stopped (ErrNodeFenced).
	KindNodeFenced ErrorKind = "node_fenced"
)

// kindSentinels maps each kind that has one to its sentinel error.
var kindSentinels = map[ErrorKind]error{
	KindWorkerDied:      ErrWorkerDied,
	KindCancelled:       ErrTaskCancelled,
	KindUnknownFunction: ErrUnknownFunction,
	KindTypeMismatch:    ErrTypeMismatch,
	KindStoreFull:       ErrStoreFull,
	KindInfeasible:      ErrInfeasible,
	KindOwnerDied:       ErrOwnerDied,
	KindActorDied:       ErrActorDied,
	KindObjectLost:      ErrObjectLost,
	KindOutOfMemory:     ErrOutOfMemory,
	KindUnserializable:  ErrUnserializable,
	KindNodeFenced:      ErrNodeFenced,
}

// TaskError is how a task's failure comes back from Get: the error the
// function returned, its panic, or the system failure that stopped it.
// Every TaskError matches ErrTaskFailed with errors.Is, and the sentinel of
// its Kind too (ErrWorkerDied, ErrTaskCancelled, ...). A task whose
// argument failed fails with that argument's TaskError.
type TaskError struct {
	// Task is the task's name: its function's, unless set with Name.
	Task string
	// Kind says what stopped the task.
	Kind ErrorKind
	// Message is the text of the error the function returned, the value
	// of its panic, or what the system says went wrong.
	Message string
	// Stack is the worker's stack where the function failed, for KindApp
	// and KindPanic.
	Stack string
	// PID is the process that ran the task, when one did.
	PID int
}

// Error says which task failed, and how.
func (e *TaskError) Error() string {
	return core.TaskErrorMessage(string(e.Kind), e.Task, e.PID, e.Message)
}

// Is makes errors.Is match ErrTaskFailed and the sentinel of the error's
// kind.
func (e *TaskError) Is(target error) bool {
	return target == ErrTaskFailed || target != nil && kindSentinels[e.Kind] == target
}

// Unwrap gives the sentinel of the error's kind, or nil.
func (e *TaskError) Unwrap() error { return kindSentinels[e.Kind] }

// publicErr gives the runtime's task errors the public type.
func publicErr(err error) error {
	if te, ok := err.(*core.TaskError); ok {
		return &TaskError{Task: te.Task, Kind: ErrorKind(te.Kind), Message: te.Message, Stack: te.Stack, PID: te.PID}
	}
	return err
}
