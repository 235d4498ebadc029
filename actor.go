package rayo

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/ids"
)

// Actor is a handle to an actor: a value of type S living in a worker
// process of its own, whose methods (declared with MethodN) run there one
// call at a time, in the order each caller made them. Handles are cheap to
// copy and can be passed to tasks and other actors, inside values too.
//
// An actor that no handle reaches any more is stopped once its calls are
// done, unless it is named (Name) or a handle was passed to another
// process.
type Actor[S any] struct {
	h   *core.ActorHandle
	err error
}

// Err reports whether creating the actor failed to start (a bad argument,
// a name already taken). Failures of the constructor itself come back from
// the actor's calls.
func (a Actor[S]) Err() error { return a.err }

// ID is the actor's identifier in hex.
func (a Actor[S]) ID() string {
	if a.h == nil {
		return ""
	}
	return a.h.ID.String()
}

func (a Actor[S]) String() string {
	return fmt.Sprintf("Actor[%s](%s)", reflect.TypeFor[S](), a.ID())
}

// Release drops this handle now rather than when the garbage collector
// finds it.
func (a Actor[S]) Release() { a.h.Release() }

func (a Actor[S]) handle() (*core.ActorHandle, error) {
	if a.err != nil {
		return nil, a.err
	}
	if a.h == nil {
		return nil, fmt.Errorf("%w: zero Actor", ErrActorDied)
	}
	return a.h, nil
}

const actorTag = 27962

// MarshalCBOR encodes the handle inside another value.
func (a Actor[S]) MarshalCBOR() ([]byte, error) {
	h, err := a.handle()
	if err != nil {
		return nil, fmt.Errorf("rayo: cannot serialize an actor handle: %w", err)
	}
	h.Exported()
	return cbor.Marshal(cbor.Tag{Number: actorTag, Content: wireRef{ID: h.ID[:], Owner: h.Owner}})
}

// UnmarshalCBOR decodes a handle that traveled inside a value.
func (a *Actor[S]) UnmarshalCBOR(b []byte) error {
	w, err := decodeTagged(b, actorTag, "actor handle")
	if err != nil {
		return err
	}
	id, err := ids.TaskIDFrom(w.ID)
	if err != nil {
		return err
	}
	rt := current()
	if rt == nil {
		return ErrNotInitialized
	}
	a.h = rt.ActorHandleFor(id, w.Owner)
	return nil
}

// MaxConcurrency, for an actor, lets up to n of its calls run at once, each in its
// own goroutine: Go's form of Ray's threaded and async actors. Calls are
// then not ordered.
func MaxConcurrency(n int) Option {
	return option("MaxConcurrency", forActor, func(o *options) { o.maxConcurrency = n })
}

// MaxRestarts, for an actor, is how many times it is restarted (its constructor run
// again in a new process) after its process dies; -1 is always. Default 0.
func MaxRestarts(n int) Option {
	return option("MaxRestarts", forActor, func(o *options) { o.maxRestarts = n })
}

// MaxTaskRetries, for an actor, is how many times a call that was running
// when the actor's process died is retried on the restarted actor, in
// order; -1 is always. Default 0: such calls fail with ErrActorDied.
func MaxTaskRetries(n int) Option {
	return option("MaxTaskRetries", forActor, func(o *options) { o.maxTaskRetries = n })
}

// Detached makes an actor or a placement group outlive the driver that
// created it, in a cluster started with `rayo start` (an embedded cluster
// ends with its driver). A detached actor needs a Name, by which GetActor
// finds it; Kill stops it.
func Detached() Option {
	return option("Detached", forActor|forPlacementGroup, func(o *options) { o.detached = true })
}

// Namespace scopes an actor's Name, for an actor and GetActor.
func Namespace(ns string) Option {
	return option("Namespace", forActor|forGetActor, func(o *options) { o.namespace = ns })
}

// actorClass is what every actor declaration shares.
type actorClass struct {
	fn        *core.Function
	late      bool
	declErr   error // the constructor's parameters cannot cross processes
	opts      options
	stateType string
}

func declareClass[S any](f any, ctor core.CtorInvoker, opts []Option) actorClass {
	sym, src := symbol(f)
	fn, ok := core.RegisterFunction(sym, &core.Function{Ctor: ctor, Source: src})
	o := defaultOptions()
	o.taskCPUs = 0 // an actor holds no CPU unless asked
	o.apply(forActor, opts)
	return actorClass{fn: fn, late: !ok, opts: o, stateType: reflect.TypeFor[S]().String(), declErr: checkSig(f, 0, false)}
}

func (c actorClass) with(opts []Option) actorClass {
	c.opts.apply(forActor, opts)
	return c
}

// display is the actor's name in errors and logs: its state's type.
func (c actorClass) display() string {
	return strings.TrimLeft(c.stateType[strings.LastIndex(c.stateType, ".")+1:], "*")
}

func (c actorClass) create(args ...argValue) (*core.ActorHandle, error) {
	if err := checkPlacement(c.opts); err != nil {
		return nil, fmt.Errorf("rayo: actor %s: %w", c.display(), err)
	}
	rt := current()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	if c.late {
		return nil, fmt.Errorf("%w: actor %s was declared after rayo.Init: declare actors at package level", ErrUnknownFunction, c.display())
	}
	if c.declErr != nil {
		return nil, fmt.Errorf("rayo: actor %s: %w", c.display(), c.declErr)
	}
	cargs, err := coreArgs(c.display(), args)
	if err != nil {
		return nil, err
	}
	place, _ := placementFor(rt, c.opts.placement)
	res := map[string]float64{}
	if c.opts.taskCPUs > 0 {
		res["CPU"] = c.opts.taskCPUs
	}
	if c.opts.taskGPUs > 0 {
		res["GPU"] = c.opts.taskGPUs
	}
	if c.opts.taskMemory > 0 {
		res[memoryResource] = c.opts.taskMemory
	}
	for k, v := range c.opts.taskResources {
		res[k] = v
	}
	return rt.CreateActor(context.Background(), core.ActorOptions{
		Class:          c.fn.Name,
		Name:           c.display(),
		StateType:      c.stateType,
		RegisterName:   c.opts.name,
		Namespace:      c.opts.namespace,
		Resources:      res,
		MaxConcurrency: c.opts.maxConcurrency,
		Detached:       c.opts.detached,
		MaxRestarts:    c.opts.maxRestarts,
		MaxTaskRetries: retriesOf(c.opts.maxTaskRetries),
		Placement:      place,
	}, cargs)
}

func actorOf[S any](h *core.ActorHandle, err error) Actor[S] {
	if err != nil {
		return Actor[S]{err: err}
	}
	return Actor[S]{h: h}
}

// ActorClass is implemented by every actor declaration of state type S,
// so that methods can name the class they belong to.
type ActorClass[S any] interface {
	class() *actorClass
}

// actorMethod is what every method declaration shares.
type actorMethod struct {
	fn      *core.Function
	late    bool
	declErr error // the method's arguments or result cannot cross processes
	name    string
}

func declareMethod(class *actorClass, f any, numReturns int, inv core.MethodInvoker) actorMethod {
	sym, src := symbol(f)
	fn, ok := core.RegisterFunction(sym, &core.Function{Method: inv, NumReturns: numReturns, Source: src})
	name := sym[strings.LastIndex(sym, ".")+1:]
	return actorMethod{fn: fn, late: !ok, declErr: checkSig(f, 1, true), name: class.display() + "." + strings.TrimSuffix(name, "-fm")}
}

func (m actorMethod) call(h *core.ActorHandle, herr error, args ...argValue) ([]*core.Handle, error) {
	if herr != nil {
		return nil, herr
	}
	rt := current()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	if m.late {
		return nil, fmt.Errorf("%w: method %s was declared after rayo.Init", ErrUnknownFunction, m.name)
	}
	if m.declErr != nil {
		return nil, fmt.Errorf("rayo: %s: %w", m.name, m.declErr)
	}
	cargs, err := coreArgs(m.name, args)
	if err != nil {
		return nil, err
	}
	return rt.SubmitActorTask(context.Background(), h, core.TaskOptions{
		Function: m.fn.Name, Name: m.name, NumReturns: m.fn.NumReturns,
	}, cargs)
}

// stateOf gives a method the actor's state in the worker.
func stateOf[S any](state any) (S, error) {
	s, ok := state.(S)
	if !ok {
		return s, fmt.Errorf("%w: actor state is %T, method wants %s", core.ErrTypeMismatch, state, reflect.TypeFor[S]())
	}
	return s, nil
}

// GetActor finds the actor created with Name(name) (in Namespace, if
// given). Its state must have type S.
func GetActor[S any](ctx context.Context, name string, opts ...Option) (Actor[S], error) {
	o := defaultOptions()
	o.apply(forGetActor, opts)
	if o.optErr != nil {
		return Actor[S]{}, fmt.Errorf("rayo: GetActor %q: %w", name, o.optErr)
	}
	rt := current()
	if rt == nil {
		return Actor[S]{}, ErrNotInitialized
	}
	info, err := rt.LookupActor(ctx, o.namespace, name)
	if err != nil {
		return Actor[S]{}, fmt.Errorf("rayo: GetActor %q: %w", name, err)
	}
	if want := reflect.TypeFor[S]().String(); info.Class != want {
		return Actor[S]{}, fmt.Errorf("%w: actor %q holds a %s, not a %s", ErrTypeMismatch, name, info.Class, want)
	}
	id, err := ids.TaskIDFrom(info.ActorId)
	if err != nil {
		return Actor[S]{}, err
	}
	if info.Detached && info.WorkerAddr != "" {
		return Actor[S]{h: rt.DetachedActorHandle(id, info.OwnerAddr, info.WorkerAddr)}, nil
	}
	return Actor[S]{h: rt.ActorHandleFor(id, info.OwnerAddr)}, nil
}

// Kill stops an actor at once: its process exits, and its pending and
// later calls fail with ErrActorDied.
func Kill[S any](ctx context.Context, a Actor[S]) error {
	h, err := a.handle()
	if err != nil {
		return err
	}
	return h.Runtime().KillActor(ctx, h)
}

func retriesOf(n int) int {
	if n < 0 {
		return 1 << 30
	}
	return n
}
