package rayo

//go:generate go run ./internal/gen/funcs -out funcs_gen.go

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"

	"github.com/rayo-dev/rayo/internal/codec"
	"github.com/rayo-dev/rayo/internal/core"
)

// remoteFunc is what every declared remote function shares: its entry in
// the registry and its default options.
type remoteFunc struct {
	fn      *core.Function
	late    bool  // declared after Init: workers never learn of it
	declErr error // the function's signature cannot cross processes
	opts    options
	shape   *core.Shape // from opts, computed once
}

func declare(f any, numReturns int, inv core.Invoker, opts []Option) remoteFunc {
	sym, src := symbol(f)
	fn, ok := core.RegisterFunction(sym, &core.Function{Invoke: inv, NumReturns: numReturns, Source: src})
	o := defaultOptions()
	o.apply(forTask, opts)
	if o.name == "" {
		o.name = shortName(sym, src)
	}
	r := remoteFunc{fn: fn, late: !ok, opts: o, declErr: checkSignature(f)}
	r.shape = core.NewShape(fn.Name, r.resources(), r.opts.placement)
	return r
}

func (r remoteFunc) resources() map[string]float64 {
	res := make(map[string]float64, 2+len(r.opts.taskResources))
	if r.opts.taskCPUs > 0 {
		res["CPU"] = r.opts.taskCPUs
	}
	if r.opts.taskGPUs > 0 {
		res["GPU"] = r.opts.taskGPUs
	}
	if r.opts.taskMemory > 0 {
		res[memoryResource] = r.opts.taskMemory
	}
	for k, v := range r.opts.taskResources {
		if v > 0 {
			res[k] = v
		}
	}
	return res
}

// symbol is the name of function f's symbol and where its code is, as
// file:line.
func symbol(f any) (name, source string) {
	fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer())
	file, line := fn.FileLine(fn.Entry())
	return fn.Name(), fmt.Sprintf("%s:%d", file, line)
}

// shortName is a task's name when none is given: "fn" for a function
// "example.com/pkg.fn", and where the code is ("pkg/file.go:14", the
// file's folder and name) for a function literal, whose symbol
// ("pkg.init.func2") would say nothing of which one it is.
func shortName(sym, source string) string {
	if isLiteral(sym) && source != "" {
		if i := strings.LastIndex(source, "/"); i >= 0 {
			if j := strings.LastIndex(source[:i], "/"); j >= 0 {
				return source[j+1:]
			}
		}
		return source
	}
	if i := strings.LastIndex(sym, "/"); i >= 0 {
		sym = sym[i+1:]
	}
	sym = strings.ReplaceAll(sym, "glob..", "")
	if i := strings.Index(sym, "."); i >= 0 && !strings.Contains(sym[i+1:], ".") {
		return sym[i+1:]
	}
	return sym
}

// isLiteral reports whether sym names a function literal: its last part
// is "funcN" (or "gowrapN"), as the compiler names them.
func isLiteral(sym string) bool {
	last := sym[strings.LastIndex(sym, ".")+1:]
	for _, p := range []string{"func", "gowrap"} {
		if n, ok := strings.CutPrefix(last, p); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return true
		}
	}
	return false
}

func (r remoteFunc) with(opts []Option) remoteFunc {
	r.opts.apply(forTask, opts)
	r.shape = core.NewShape(r.fn.Name, r.resources(), r.opts.placement)
	return r
}

// submit starts the task; the errors it returns are the caller's fault
// and reach the user through the returned refs' Err and Get.
func (r remoteFunc) submit(args ...argValue) ([]*core.Handle, error) {
	if err := checkPlacement(r.opts); err != nil {
		return nil, fmt.Errorf("rayo: %s: %w", r.opts.name, err)
	}
	rt := current()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	if r.late {
		return nil, fmt.Errorf("%w: %s was declared after rayo.Init, so workers do not have it: declare remote functions at package level", ErrUnknownFunction, r.opts.name)
	}
	if r.declErr != nil {
		return nil, fmt.Errorf("rayo: %s: %w", r.opts.name, r.declErr)
	}
	shape := r.shape
	if p, captured := placementFor(rt, r.opts.placement); captured {
		shape = core.NewShape(r.fn.Name, r.resources(), p)
	}
	cargs, err := coreArgs(r.opts.name, args)
	if err != nil {
		return nil, err
	}
	retries := r.opts.maxRetries
	if retries < 0 {
		retries = 1 << 30
	}
	return rt.Submit(context.Background(), core.TaskOptions{
		Function:        r.fn.Name,
		Name:            r.opts.name,
		NumReturns:      r.fn.NumReturns,
		Shape:           shape,
		MaxRetries:      retries,
		RetryExceptions: r.opts.retryExceptions,
	}, cargs)
}

// coreArgs encodes the arguments of a call to name.
func coreArgs(name string, args []argValue) ([]core.Arg, error) {
	cargs := make([]core.Arg, len(args))
	for i, a := range args {
		switch {
		case a.err != nil:
			return nil, fmt.Errorf("rayo: %s: argument %d: %w", name, i, a.err)
		case a.h != nil:
			cargs[i].Ref = a.h
		default:
			p, contained, err := encode(a.val)
			if err != nil {
				return nil, fmt.Errorf("rayo: %s: argument %d: %w", name, i, err)
			}
			cargs[i].Value, cargs[i].Contained = p, contained
		}
	}
	return cargs, nil
}

func refOf[T any](hs []*core.Handle, err error, i int) Ref[T] {
	if err != nil {
		return Ref[T]{err: err}
	}
	return Ref[T]{h: hs[i]}
}

// decodeArg decodes argument i of a task in the worker: a copy the task
// owns, or for a View parameter a view that ends with the task's scope in
// ctx.
func decodeArg[T any](ctx context.Context, b []byte, i int) (T, error) {
	var v T
	if av, ok := any(&v).(argViewer); ok {
		if err := av.viewArg(ctx, b); err != nil {
			return v, fmt.Errorf("%w: argument %d is not a %s: %v", core.ErrTypeMismatch, i, reflect.TypeFor[T](), err)
		}
		return v, nil
	}
	if err := codec.Decode(b, &v); err != nil {
		return v, fmt.Errorf("%w: argument %d is not a %s: %v", core.ErrTypeMismatch, i, reflect.TypeFor[T](), err)
	}
	return v, nil
}

func checkArgs(args [][]byte, n int) error {
	if len(args) != n {
		return fmt.Errorf("%w: got %d arguments, want %d", core.ErrTypeMismatch, len(args), n)
	}
	return nil
}

// results encodes a task's return values in the worker.
func results(vs ...any) ([]core.Result, error) {
	out := make([]core.Result, len(vs))
	for i, v := range vs {
		p, contained, err := encode(v)
		if err != nil {
			return nil, fmt.Errorf("result %d: %w", i, err)
		}
		out[i] = core.Result{Value: p, Contained: contained}
	}
	return out, nil
}

type coreResult = core.Result

// checkSignature finds parameter and result types that cannot cross
// between processes, so that calls fail at submission rather than in the
// worker: channels, functions, and interfaces with methods (the worker
// could not know which concrete type to rebuild; `any` is fine, it gets
// plain values), and types holding a struct with an unexported field,
// which would arrive zeroed (ErrUnserializable, see codec.CheckType).
func checkSignature(f any) error { return checkSig(f, 0, true) }

// checkSig checks the parameters from index first on, and the results if
// asked (an actor's constructor keeps its result in the worker).
func checkSig(f any, first int, results bool) error {
	t := reflect.TypeOf(f)
	bad := func(x reflect.Type) bool {
		switch x.Kind() {
		case reflect.Chan, reflect.Func, reflect.UnsafePointer:
			return true
		case reflect.Interface:
			return x.NumMethod() > 0 && x != errorType
		}
		return false
	}
	for i := first; i < t.NumIn(); i++ {
		if x := t.In(i); bad(x) {
			return fmt.Errorf("%w: parameter %d has type %s, which cannot be sent to a worker; use a concrete type", ErrTypeMismatch, i+1, x)
		}
		if err := codec.CheckType(t.In(i)); err != nil {
			return fmt.Errorf("parameter %d: %w", i+1, err)
		}
	}
	for i := 0; results && i < t.NumOut(); i++ {
		if x := t.Out(i); bad(x) && x != errorType {
			return fmt.Errorf("%w: result %d has type %s, which cannot be sent back from a worker; use a concrete type", ErrTypeMismatch, i+1, x)
		}
		if err := codec.CheckType(t.Out(i)); err != nil {
			return fmt.Errorf("result %d: %w", i+1, err)
		}
	}
	return nil
}

var errorType = reflect.TypeFor[error]()
