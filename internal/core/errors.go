package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Sentinel errors of the runtime. The public package re-exports them.
var (
	ErrNotInitialized  = errors.New("rayo: not initialized (call rayo.Init)")
	ErrShutdown        = errors.New("rayo: runtime is shut down")
	ErrObjectLost      = objstore.ErrObjectLost
	ErrObjectFreed     = errors.New("rayo: object was freed")
	ErrWorkerDied      = errors.New("rayo: worker died while running the task")
	ErrTaskCancelled   = errors.New("rayo: task was cancelled")
	ErrUnknownFunction = errors.New("rayo: function is not registered in the worker")
	ErrStoreFull       = errors.New("rayo: object store full")
	ErrInfeasible      = errors.New("rayo: no node can ever satisfy the task's resources")
	ErrNilRef          = errors.New("rayo: zero Ref")
	ErrTaskFailed      = errors.New("rayo: task failed")
	ErrTypeMismatch    = errors.New("rayo: type mismatch")
	ErrOwnerDied       = errors.New("rayo: owner of the object is gone")
	ErrActorDied       = errors.New("rayo: actor is dead")
	ErrOutOfMemory     = errors.New("rayo: task killed by its node's memory monitor: the node ran out of memory")
)

// Kinds of TaskError, as carried on the wire.
const (
	KindApp             = "app"
	KindPanic           = "panic"
	KindWorkerDied      = "worker_died"
	KindCancelled       = "cancelled"
	KindUnknownFunction = "unknown_function"
	KindType            = "type"
	KindStoreFull       = "store_full"
	KindInfeasible      = "infeasible"
	KindOwnerDied       = "owner_died"
	KindSystem          = "system"
	KindActorDied       = "actor_died"
	KindObjectLost      = "object_lost"
	KindOutOfMemory     = "out_of_memory"
	KindUnserializable  = "unserializable" // a result that cannot be sent whole
)

// errorTypes names each kind as the state API shows it (a task's
// error_type), after Ray's ErrorType where Ray has one.
var errorTypes = map[string]string{
	KindApp:             "TASK_EXECUTION_EXCEPTION",
	KindPanic:           "TASK_PANIC",
	KindWorkerDied:      "WORKER_DIED",
	KindCancelled:       "TASK_CANCELLED",
	KindUnknownFunction: "FUNCTION_NOT_FOUND",
	KindType:            "TYPE_MISMATCH",
	KindStoreFull:       "OBJECT_STORE_FULL",
	KindInfeasible:      "TASK_UNSCHEDULABLE_ERROR",
	KindOwnerDied:       "OWNER_DIED",
	KindSystem:          "SYSTEM_ERROR",
	KindActorDied:       "ACTOR_DIED",
	KindObjectLost:      "OBJECT_LOST",
	KindOutOfMemory:     "OUT_OF_MEMORY",
	KindUnserializable:  "TASK_EXECUTION_EXCEPTION", // Ray raises in the worker
	KindNodeFenced:      "NODE_DIED",
}

// ErrorType is the state API's name of a kind of TaskError.
func ErrorType(kind string) string {
	if t, ok := errorTypes[kind]; ok {
		return t
	}
	return "SYSTEM_ERROR"
}

// TaskError is the failure of a remote task: the error it returned, its
// panic, or the system failure that stopped it. It matches the sentinel of
// its kind with errors.Is (ErrWorkerDied, ErrTaskCancelled, ...), and every
// TaskError matches ErrTaskFailed.
type TaskError struct {
	Task    string // the task's name (its function unless named)
	Kind    string // one of the Kind constants
	Message string // the error's text, or the panic's value
	Stack   string // the remote stack, for panics and returned errors
	PID     int    // the worker process that ran it, if any
}

func (e *TaskError) Error() string { return TaskErrorMessage(e.Kind, e.Task, e.PID, e.Message) }

// TaskErrorMessage is how the error of task that failed with kind reads,
// for this package's TaskError and the public one alike.
func TaskErrorMessage(kind, task string, pid int, msg string) string {
	switch {
	case kind == KindPanic:
		return fmt.Sprintf("rayo: task %s panicked (pid %d): %s", task, pid, msg)
	case kind == KindApp:
		return fmt.Sprintf("rayo: task %s failed (pid %d): %s", task, pid, msg)
	case task == "" && strings.HasPrefix(msg, "rayo: "):
		return msg
	case task == "":
		return "rayo: " + msg // not a task's own failure (an object whose owner died)
	default:
		return fmt.Sprintf("rayo: task %s: %s", task, msg)
	}
}

// Is makes errors.Is match the sentinel of the error's kind.
func (e *TaskError) Is(target error) bool {
	if target == ErrTaskFailed {
		return true
	}
	return kindSentinel(e.Kind) == target && target != nil
}

// Unwrap gives the sentinel of the error's kind, if any.
func (e *TaskError) Unwrap() error { return kindSentinel(e.Kind) }

func kindSentinel(kind string) error {
	switch kind {
	case KindWorkerDied:
		return ErrWorkerDied
	case KindCancelled:
		return ErrTaskCancelled
	case KindUnknownFunction:
		return ErrUnknownFunction
	case KindType:
		return ErrTypeMismatch
	case KindStoreFull:
		return ErrStoreFull
	case KindInfeasible:
		return ErrInfeasible
	case KindOwnerDied:
		return ErrOwnerDied
	case KindActorDied:
		return ErrActorDied
	case KindOutOfMemory:
		return ErrOutOfMemory
	case KindObjectLost:
		return ErrObjectLost
	case KindUnserializable:
		return codec.ErrUnserializable
	case KindNodeFenced:
		return ErrNodeFenced
	}
	return nil
}

// TaskErrorFrom converts a wire error.
func TaskErrorFrom(e *pb.TaskError) *TaskError {
	return &TaskError{Task: e.TaskName, Kind: e.Kind, Message: e.Message, Stack: e.Stack, PID: int(e.Pid)}
}

func sysErr(task, kind, msg string) *pb.TaskError {
	return &pb.TaskError{TaskName: task, Kind: kind, Message: msg}
}
