package rayo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rayo-dev/rayo/internal/core"
	"github.com/rayo-dev/rayo/internal/raylet"
)

// Remote functions used by the tests. They are package-level so that the
// test binary, re-run as a worker, registers them too.
var (
	add     = Func2(func(a, b int) int { return a + b })
	inc     = Func1(func(x int) int { return x + 1 })
	sleepMs = Func1(func(ms int) int { time.Sleep(time.Duration(ms) * time.Millisecond); return ms })
	// awaitFile returns path once a file is there (within 60 s): a task the
	// test finishes when it wants.
	awaitFile = Func1E(func(path string) (string, error) {
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(path); err == nil {
				return path, nil
			}
		}
		return "", fmt.Errorf("%s never came", path)
	})
	fails    = Func1E(func(msg string) (int, error) { return 0, errors.New(msg) })
	panics   = Func0(func() int { panic("boom from task") })
	exits    = Func1(func(code int) int { os.Exit(code); return 0 })
	killSelf = Func0(func() int { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} })
	fatal    = Func0(func() int {
		debug.SetMaxStack(1 << 16)
		var rec func(int) int
		rec = func(n int) int { return rec(n+1) + 1 }
		return rec(0)
	})
	// dieOnce exits the first time it runs (marked by a file) and then succeeds.
	dieOnce = Func1(func(marker string) string {
		if _, err := os.Stat(marker); err != nil {
			_ = os.WriteFile(marker, nil, 0o644)
			os.Exit(7)
		}
		return "second attempt"
	})
	sumVec = Func1(func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s
	})
	makeVec = Func2(func(n int, x float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = x
		}
		return v
	})
	triple  = Func0x3(func() (int, string, bool) { return 1, "two", true })
	sumRefs = Func1(func(b box) int {
		vs, err := GetAll(context.Background(), b.Refs)
		if err != nil {
			panic(err)
		}
		s := 0
		for _, v := range vs {
			s += v
		}
		return s
	})
	takesAny = Func1(func(v any) int { return 0 })
	subExp   = Func2(func(i, j int) int { return i + j })
	runExp   = Func1(func(i int) int {
		refs := make([]Ref[int], 10)
		for j := range refs {
			refs[j] = subExp.Remote(V(i), V(j))
		}
		vs, err := GetAll(context.Background(), refs)
		if err != nil {
			panic(err)
		}
		s := 0
		for _, v := range vs {
			s += v
		}
		return s
	})
	// putInside puts a value in the worker and returns the ref nested in a box.
	putInside = Func1(func(n int) box {
		return box{Refs: []Ref[int]{Put(context.Background(), n), Put(context.Background(), n*10)}}
	})
)

type box struct{ Refs []Ref[int] }

func TestMain(m *testing.M) {
	ServeWorker()
	if os.Getenv("RAYO_TEST_CHILD_DRIVER") != "" {
		childDriver()
	}
	if err := Init(NumCPUs(2)); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = Shutdown()
	os.Exit(code)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRemoteValuesAndRefs(t *testing.T) {
	ctx := ctxT(t)
	one, two := Put(ctx, 1), Put(ctx, 2)
	for name, r := range map[string]Ref[int]{
		"values":    add.Remote(V(1), V(2)),
		"value+ref": add.Remote(V(1), two),
		"ref+value": add.Remote(one, V(2)),
		"refs":      add.Remote(one, two),
	} {
		if v, err := Get(ctx, r); err != nil || v != 3 {
			t.Errorf("%s: got %v, %v; want 3", name, v, err)
		}
	}
}

func TestChainAndMultipleReturns(t *testing.T) {
	ctx := ctxT(t)
	if v, err := Get(ctx, inc.Remote(inc.Remote(inc.Remote(V(0))))); err != nil || v != 3 {
		t.Fatalf("chain: %v, %v", v, err)
	}
	a, b, c := triple.Remote()
	va, _ := Get(ctx, a)
	vb, _ := Get(ctx, b)
	vc, err := Get(ctx, c)
	if err != nil || va != 1 || vb != "two" || !vc {
		t.Fatalf("multiple returns: %v %v %v %v", va, vb, vc, err)
	}
}

func TestPutGetMany(t *testing.T) {
	ctx := ctxT(t)
	refs := make([]Ref[int], 10)
	for i := range refs {
		refs[i] = Put(ctx, i)
	}
	vs, err := GetAll(ctx, refs)
	if err != nil || fmt.Sprint(vs) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("GetAll: %v %v", vs, err)
	}
	s, err := Get(ctx, Put(ctx, "example"))
	if err != nil || s != "example" {
		t.Fatalf("string: %q %v", s, err)
	}
}

func TestNestedRefsStayRefs(t *testing.T) {
	ctx := ctxT(t)
	b := box{Refs: []Ref[int]{Put(ctx, 1), add.Remote(V(2), V(3)), Put(ctx, 4)}}
	if v, err := Get(ctx, sumRefs.Remote(V(b))); err != nil || v != 10 {
		t.Fatalf("refs nested in an argument: %v %v", v, err)
	}
	// Refs nested in a Put value, read back in the driver.
	got, err := Get(ctx, Put(ctx, b))
	if err != nil || len(got.Refs) != 3 {
		t.Fatalf("Get box: %v %v", got, err)
	}
	if v, err := Get(ctx, got.Refs[1]); err != nil || v != 5 {
		t.Fatalf("nested ref: %v %v", v, err)
	}
	// Refs owned by a worker, returned nested in its result.
	inner, err := Get(ctx, putInside.Remote(V(7)))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	vs, err := GetAll(ctx, inner.Refs)
	if err != nil || fmt.Sprint(vs) != "[7 70]" {
		t.Fatalf("worker-owned nested refs: %v %v", vs, err)
	}
}

func TestNestedTasksWithOneCPU(t *testing.T) {
	restart(t, NumCPUs(1))
	ctx := ctxT(t)
	refs := make([]Ref[int], 5)
	for i := range refs {
		refs[i] = runExp.Remote(V(i))
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	vs, err := GetAll(short, refs)
	if err != nil || fmt.Sprint(vs) != "[45 55 65 75 85]" {
		t.Fatalf("nested: %v %v\nraylet: %s\nlogs: %s", vs, err, debugState(), SessionDir())
	}
}

// restart replaces the shared cluster with one made with opts, and puts
// the default back afterwards.
func restart(t *testing.T, opts ...Option) {
	t.Helper()
	if err := Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := Init(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = Shutdown()
		if err := Init(NumCPUs(2)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWaitOrder(t *testing.T) {
	restart(t, NumCPUs(4))
	ctx := ctxT(t)
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	done := func(name string) {
		if err := os.WriteFile(file(name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer done("a")
	// The tasks finish in the order the test creates their files: b, c, a.
	refs := []Ref[string]{awaitFile.Remote(V(file("a"))), awaitFile.Remote(V(file("b"))), awaitFile.Remote(V(file("c")))}
	done("b")
	ready, rest, err := Wait(ctx, refs, 1)
	if err != nil || len(ready) != 1 || len(rest) != 2 || ready[0] != refs[1] {
		t.Fatalf("first: ready %v rest %v err %v", ready, rest, err)
	}
	done("c")
	ready, rest, _ = Wait(ctx, rest, 1)
	if len(ready) != 1 || ready[0] != refs[2] || rest[0] != refs[0] {
		t.Fatalf("second: ready %v rest %v", ready, rest)
	}
	// A deadline returns what is ready, like Ray's timeout.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	r2, n2, err := Wait(short, []Ref[int]{sleepMs.Remote(V(2000))}, 1)
	if err != nil || len(r2) != 0 || len(n2) != 1 {
		t.Fatalf("timeout: %v %v %v", r2, n2, err)
	}
}

func TestGetDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Get(ctx, sleepMs.Remote(V(1000)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

func TestTaskErrorFlowsOn(t *testing.T) {
	ctx := ctxT(t)
	r := fails.Remote(V("bad input"))
	_, err := Get(ctx, r)
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindApp || !strings.Contains(te.Message, "bad input") || te.Task == "" {
		t.Fatalf("want app TaskError, got %#v", err)
	}
	if !errors.Is(err, ErrTaskFailed) {
		t.Fatalf("TaskError should match ErrTaskFailed: %v", err)
	}
	// A returned error has no stack of its own: the "stack" names the
	// function and where its code is, not rayo's worker frames.
	if !strings.HasPrefix(te.Stack, "returned by "+te.Task+" (") || !strings.Contains(te.Stack, "rayo_test.go:") ||
		strings.Contains(te.Stack, "internal/worker") {
		t.Fatalf("stack of a returned error: %q", te.Stack)
	}
	// A dependent task fails with the same error without running.
	_, err = Get(ctx, inc.Remote(inc.Remote(r)))
	if !errors.As(err, &te) || !strings.Contains(te.Message, "bad input") {
		t.Fatalf("dependent: %v", err)
	}
}

func TestPanicCarriesStack(t *testing.T) {
	_, err := Get(ctxT(t), panics.Remote())
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindPanic || !strings.Contains(te.Message, "boom from task") {
		t.Fatalf("want panic TaskError, got %v", err)
	}
	if !strings.Contains(te.Stack, "rayo_test.go") || te.PID == os.Getpid() || te.PID == 0 {
		t.Fatalf("stack should show the remote frame, pid the worker: pid %d stack %s", te.PID, te.Stack)
	}
}

func TestWorkerDeathIsRetriedThenReported(t *testing.T) {
	ctx := ctxT(t)
	for name, r := range map[string]Ref[int]{
		"exit":    exits.Options(MaxRetries(1)).Remote(V(3)),
		"sigkill": killSelf.Options(MaxRetries(0)).Remote(),
		"fatal":   fatal.Options(MaxRetries(0)).Remote(),
	} {
		_, err := Get(ctx, r)
		if !errors.Is(err, ErrWorkerDied) {
			t.Errorf("%s: want ErrWorkerDied, got %v", name, err)
		}
	}
	// A killed worker cannot remove its socket: its raylet does.
	for deadline := time.Now().Add(20 * time.Second); ; {
		var stale []string
		socks, _ := filepath.Glob(filepath.Join(SessionDir(), "w-*.sock"))
		for _, sock := range socks {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(sock), "w-%d.sock", &pid); err != nil || syscall.Kill(pid, 0) != nil {
				stale = append(stale, filepath.Base(sock))
			}
		}
		if len(stale) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets of dead workers left behind: %v", stale)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A task whose worker dies once succeeds on a fresh worker.
	marker := filepath.Join(t.TempDir(), "died")
	v, err := Get(ctx, dieOnce.Remote(V(marker)))
	if err != nil || v != "second attempt" {
		t.Fatalf("retry: %q %v", v, err)
	}
	// The cluster still works.
	if v, err := Get(ctx, add.Remote(V(2), V(2))); err != nil || v != 4 {
		t.Fatalf("after deaths: %v %v", v, err)
	}
}

func TestUnserializable(t *testing.T) {
	ctx := ctxT(t)
	r := Put(ctx, make(chan int))
	if !errors.Is(r.Err(), ErrUnserializable) {
		t.Fatalf("Put(chan): %v", r.Err())
	}
	if _, err := Get(ctx, r); !errors.Is(err, ErrUnserializable) {
		t.Fatalf("Get of failed Put: %v", err)
	}
	r2 := takesAny.Remote(V[any](func() {}))
	if !errors.Is(r2.Err(), ErrUnserializable) {
		t.Fatalf("Remote(func): %v", r2.Err())
	}
}

func TestUnknownFunction(t *testing.T) {
	late := Func1(func(x int) int { return x })
	r := late.Remote(V(1))
	if !errors.Is(r.Err(), ErrUnknownFunction) {
		t.Fatalf("late function: %v", r.Err())
	}
}

func TestFreedRef(t *testing.T) {
	ctx := ctxT(t)
	r := Put(ctx, 42)
	r.Release()
	if _, err := Get(ctx, r); !errors.Is(err, ErrObjectFreed) {
		t.Fatalf("want ErrObjectFreed, got %v", err)
	}
	var zero Ref[int]
	if _, err := Get(ctx, zero); !errors.Is(err, ErrNilRef) {
		t.Fatalf("zero ref: %v", err)
	}
}

func TestCancel(t *testing.T) {
	restart(t, NumCPUs(1))
	ctx := ctxT(t)
	running := sleepMs.Remote(V(20000))
	queued := sleepMs.Remote(V(20000))
	if err := Cancel(ctx, queued); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, queued); !errors.Is(err, ErrTaskCancelled) {
		t.Fatalf("queued: %v", err)
	}
	// Wait until the first task has a worker, then cancel it there.
	for !taskRunning(running) {
		runtime.Gosched()
	}
	start := time.Now()
	if err := Cancel(ctx, running); err != nil {
		t.Fatal(err)
	}
	// Cancel returned once the task stopped: its result is there for a
	// Get whose ctx has ended.
	ended, end := context.WithCancel(ctx)
	end()
	if _, err := Get(ended, running); !errors.Is(err, ErrTaskCancelled) {
		t.Fatalf("running: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if v, err := Get(ctx, add.Remote(V(1), V(1))); err != nil || v != 2 {
		t.Fatalf("after cancel: %v %v", v, err)
	}
}

// TestCancelHonoursContext checks that Cancel with an ended ctx returns
// its error and stops nothing (TestCancel checks that Cancel waits for the
// task to stop).
func TestCancelHonoursContext(t *testing.T) {
	ctx := ctxT(t)
	r := sleepMs.Remote(V(200))
	ended, end := context.WithCancel(ctx)
	end()
	if err := Cancel(ended, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("Cancel with an ended ctx: %v, want context.Canceled", err)
	}
	if v, err := Get(ctx, r); err != nil || v != 200 {
		t.Fatalf("task after a refused Cancel: %v, %v; want it to run", v, err)
	}
	var zero Ref[int]
	if err := Cancel(ctx, zero); !errors.Is(err, ErrNilRef) {
		t.Fatalf("Cancel of a zero ref: %v", err)
	}
}

func taskRunning[T any](r Ref[T]) bool { return r.h.Runtime().Pushed(r.h) }

func TestLargeObjectsCopiedOrViewed(t *testing.T) {
	ctx := ctxT(t)
	const n = 1 << 20 // 8 MiB of float64: goes to the shared-memory store
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(i)
	}
	r := Put(ctx, v)
	a, err := Get(ctx, r)
	if err != nil || len(a) != n || a[n-1] != float64(n-1) {
		t.Fatalf("Get: len %d err %v", len(a), err)
	}
	b, _ := Get(ctx, r)
	if unsafe.SliceData(a) == unsafe.SliceData(b) {
		t.Fatalf("two Gets of a stored slice share memory: each should own a copy")
	}
	v1, err := GetView(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := GetView(ctx, r)
	if unsafe.SliceData(v1.Value()) != unsafe.SliceData(v2.Value()) || v1.Value()[n-1] != float64(n-1) {
		t.Fatalf("two views of a stored slice should share memory (zero copy)")
	}
	v1.Release()
	v2.Release()
	if s, err := Get(ctx, sumVec.Remote(r)); err != nil || s != float64(n)*float64(n-1)/2 {
		t.Fatalf("large arg: %v %v", s, err)
	}
	big := makeVec.Remote(V(n), V(0.5))
	if s, err := Get(ctx, sumVec.Remote(big)); err != nil || s != float64(n)/2 {
		t.Fatalf("large result as arg: %v %v", s, err)
	}
	runtime.KeepAlive(r)
}

func TestReferenceCountingFreesEverything(t *testing.T) {
	restart(t, NumCPUs(2))
	ctx := ctxT(t)
	func() {
		var refs []Ref[float64]
		for i := 0; i < 20; i++ {
			refs = append(refs, sumVec.Remote(makeVec.Remote(V(50_000), V(1.0))))
		}
		if _, err := GetAll(ctx, refs); err != nil {
			t.Fatal(err)
		}
		p := Put(ctx, make([]byte, 1<<20))
		if _, err := Get(ctx, p); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		st := localRaylet().StoreStats()
		cs := cluster.rt.Stats()
		if st.Used == 0 && cs.Objects == 0 && cs.Tasks == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still held after the workload: store %+v runtime %+v", st, cs)
		}
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
}

func TestGetAfterShutdown(t *testing.T) {
	ctx := ctxT(t)
	r := Put(ctx, 5)
	restart(t, NumCPUs(1))
	if _, err := Get(ctx, r); !errors.Is(err, ErrShutdown) {
		t.Fatalf("ref from a shut-down cluster: %v", err)
	}
}

var special = Func0(func() int { return 7 })

func TestCustomResourcesAndInfeasible(t *testing.T) {
	restart(t, NumCPUs(2), Resources(map[string]float64{"special": 1}))
	ctx := ctxT(t)
	if v, err := Get(ctx, special.Options(Resources(map[string]float64{"special": 1})).Remote()); err != nil || v != 7 {
		t.Fatalf("task on a custom resource: %v %v", v, err)
	}
	_, err := Get(ctx, special.Options(Resources(map[string]float64{"special": 2})).Remote())
	if !errors.Is(err, ErrInfeasible) || !strings.Contains(err.Error(), "special") {
		t.Fatalf("want ErrInfeasible naming the resource, got %v", err)
	}
	_, err = Get(ctx, special.Options(NumCPUs(3)).Remote())
	if !errors.Is(err, ErrInfeasible) {
		t.Fatalf("3 CPUs on a 2-CPU node: %v", err)
	}
}

func TestWorkerRejectsUnknownFunction(t *testing.T) {
	ctx := ctxT(t)
	hs, err := cluster.rt.Submit(ctx, core.TaskOptions{
		Function: "no.such.function", Name: "ghost", NumReturns: 1,
		Resources: map[string]float64{"CPU": 1},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Get(ctx, Ref[int]{h: hs[0]})
	var te *TaskError
	if !errors.Is(err, ErrUnknownFunction) || !errors.As(err, &te) || te.Task != "ghost" {
		t.Fatalf("want ErrUnknownFunction from the worker, got %v", err)
	}
}

var (
	takesStringer = Func1(func(s fmt.Stringer) string { return s.String() })
	returnsChan   = Func0(func() chan int { return nil })
)

func TestSignatureErrorsAtSubmission(t *testing.T) {
	r := takesStringer.Remote(V[fmt.Stringer](time.Second))
	if !errors.Is(r.Err(), ErrTypeMismatch) || !strings.Contains(r.Err().Error(), "fmt.Stringer") {
		t.Fatalf("interface parameter: %v", r.Err())
	}
	if err := returnsChan.Remote().Err(); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("chan result: %v", err)
	}
}

// debugState describes the raylet's scheduling state, for failure messages.
func debugState() string {
	rl := localRaylet()
	if rl == nil {
		return ""
	}
	return rl.DebugString()
}

// localRaylet is the embedded cluster's raylet, or nil.
func localRaylet() *raylet.Raylet {
	cluster.Lock()
	defer cluster.Unlock()
	if cluster.embedded == nil {
		return nil
	}
	return cluster.embedded.Raylet()
}
