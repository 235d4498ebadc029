// Package rayo runs Go functions as remote tasks and Go values as actors,
// in parallel on every core of a machine, in the model of Ray.
//
// # Tasks and objects
//
// A remote function is declared at package level with FuncN (N arguments;
// FuncNE when it may fail, FuncNx2 and FuncNx3 for several results):
//
//	var add = rayo.Func2(func(a, b int) int { return a + b })
//
// Its Remote method submits a call and returns a Ref at once; arguments are
// values (V) or refs of the right type, checked by the compiler. Refs passed
// to tasks form a dependency graph; Get waits for a value:
//
//	x := add.Remote(rayo.V(1), rayo.V(2))
//	y := add.Remote(x, rayo.V(10))
//	v, err := rayo.Get(ctx, y) // 13
//
// Put stores a value and returns its ref; Wait returns the refs that are
// done; Cancel stops a task. Every blocking call takes a context: its
// deadline is Ray's timeout.
//
// # Actors
//
// An actor is a Go value living in a worker process of its own. It is
// declared with ActorN from a constructor, and its methods with MethodN from
// method expressions; calls from one caller run in order:
//
//	var newCounter = rayo.Actor0(func() *Counter { return &Counter{} })
//	var incr = rayo.Method0(newCounter, (*Counter).Incr)
//
//	c := newCounter.Remote()
//	n, err := rayo.Get(ctx, incr.Remote(c))
//
// # Memory handed to your code
//
// What Get and GetAll return, and what a task or method receives as an
// argument of type T, belongs to the caller: it never changes behind its
// back and it stays valid for as long as the caller keeps it, whatever
// happens to the object afterwards (freed, evicted, spilled or its memory
// reused). Large numeric slices and []byte are copied out of the
// shared-memory store to give that promise.
//
// Zero-copy reads are a choice, made with a View: GetView, or a task
// parameter of type View[T] (passed with AsView). A View's Value is read
// straight from the store's read-only mapping, with no copy. It stays
// valid, and its object stays in place, until the View is released: by
// Release, when the garbage collector finds the View unreachable, or, for
// a task's parameter, when the task's function returns. A write through it
// faults (in a task, the task fails with a message saying so). Keep the
// View reachable while you use its Value (runtime.KeepAlive), and copy
// what must outlive it.
//
// # Processes
//
// Init starts an embedded cluster: a raylet with a shared-memory object
// store and a pool of worker processes, each running this same executable.
// In a worker, Init (or ServeWorker) serves tasks and never returns, which
// is why remote functions and actors must be declared at package level,
// before Init runs. Test binaries call ServeWorker first thing in TestMain.
//
// # Errors
//
// rayo reports failures as errors, never panics. A task's returned error or
// panic comes back from Get as a *TaskError carrying the task's name and the
// worker's stack, and fails the tasks that depend on it. System failures
// match sentinels with errors.Is: ErrWorkerDied (after MaxRetries), ErrActorDied,
// ErrTaskCancelled, ErrStoreFull, ErrObjectFreed, ErrUnserializable,
// ErrUnknownFunction, ErrInfeasible, ErrShutdown; a *TaskError's Kind says
// which (KindWorkerDied, KindCancelled, ...). A Remote or Put that cannot
// even start returns a ref whose Err says why. An Option given to a call
// it does not apply to (ObjectStoreMemory to a task) is refused with an
// error, never ignored.
package rayo
