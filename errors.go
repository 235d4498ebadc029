package rayo

import (
	"errors"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
)

// Errors returned by rayo. Failures of tasks come as *TaskError, which
// matches the sentinel of its cause with errors.Is.
var (
	ErrNotInitialized     = core.ErrNotInitialized
	ErrAlreadyInitialized = errors.New("rayo: already initialized")
	ErrShutdown           = core.ErrShutdown
	ErrObjectFreed        = core.ErrObjectFreed
	ErrWorkerDied         = core.ErrWorkerDied
	ErrTaskCancelled      = core.ErrTaskCancelled
	ErrUnknownFunction    = core.ErrUnknownFunction
	ErrStoreFull          = core.ErrStoreFull
	ErrInfeasible         = core.ErrInfeasible
	ErrObjectLost         = core.ErrObjectLost
	ErrNilRef             = core.ErrNilRef
	ErrTaskFailed         = core.ErrTaskFailed
	ErrTypeMismatch       = core.ErrTypeMismatch
	ErrOwnerDied          = core.ErrOwnerDied
	ErrActorDied          = core.ErrActorDied
	ErrUnserializable     = codec.ErrUnserializable
	ErrNotSupported       = errors.New("rayo: not supported yet")

	// ErrOutOfMemory: the node's memory monitor killed the task's worker
	// more often than the task's retries allow (see MemoryUsageThreshold).
	ErrOutOfMemory = core.ErrOutOfMemory
)

// TaskError is how a task's failure comes back from Get: the error the
// function returned, its panic, or the system failure that stopped it
// (then it matches ErrWorkerDied, ErrTaskCancelled, ... with errors.Is).
// It carries the task's name and, for panics and returned errors, the stack
// of the worker at that point. Every TaskError matches ErrTaskFailed.
type TaskError = core.TaskError

// Kinds of TaskError.
const (
	KindApp        = core.KindApp
	KindPanic      = core.KindPanic
	KindWorkerDied = core.KindWorkerDied
	KindCancelled  = core.KindCancelled
	KindActorDied  = core.KindActorDied
	// KindOutOfMemory: killed by the node's memory monitor (ErrOutOfMemory).
	KindOutOfMemory = core.KindOutOfMemory
)
