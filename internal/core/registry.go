package core

import (
	"context"
	"fmt"
	"sync"

	"github.com/rayo-dev/rayo/internal/codec"
)

// Result is one encoded return value of a task and the refs nested in it.
type Result struct {
	Value     codec.Payload
	Contained []*Handle
	// Owner is the endpoint of the process that owns the result (the
	// task's caller), recorded with a copy in the node's store: a drained
	// node tells it where the copy went. "" when unknown.
	Owner string
}

// Invoker runs a registered function on encoded arguments. An error that
// wraps ErrTypeMismatch means the arguments did not decode; any other is
// the function's own.
type Invoker func(ctx context.Context, args [][]byte) ([]Result, error)

// CtorInvoker runs an actor's constructor and returns the actor's state.
type CtorInvoker func(ctx context.Context, args [][]byte) (any, error)

// MethodInvoker runs an actor's method on its state.
type MethodInvoker func(ctx context.Context, state any, args [][]byte) ([]Result, error)

// Function is a registered remote function, actor constructor or actor
// method: exactly one of Invoke, Ctor and Method is set.
type Function struct {
	Name       string
	Invoke     Invoker
	Ctor       CtorInvoker
	Method     MethodInvoker
	NumReturns int
	Source     string // where the function's code is, as file:line
}

var registry struct {
	sync.Mutex
	byName map[string]*Function
	frozen bool // set by Init: later registrations would be unknown to workers
}

// RegisterFunction adds f under a name unique in the executable, made
// from base (the function's symbol); a repeated one gets a suffix, in
// declaration order, which is the same in every process of the
// executable. It reports false once Init has frozen the registry.
func RegisterFunction(base string, f *Function) (*Function, bool) {
	registry.Lock()
	defer registry.Unlock()
	if registry.byName == nil {
		registry.byName = make(map[string]*Function)
	}
	name := base
	for i := 2; registry.byName[name] != nil; i++ {
		name = fmt.Sprintf("%s#%d", base, i)
	}
	f.Name = name
	registry.byName[name] = f
	return f, !registry.frozen
}

// Freeze marks the registry complete: Init calls it.
func Freeze() {
	registry.Lock()
	registry.frozen = true
	registry.Unlock()
}

// Lookup finds a registered function.
func Lookup(name string) *Function {
	registry.Lock()
	defer registry.Unlock()
	return registry.byName[name]
}
