package rayo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

type Counter struct{ n int }

func (c *Counter) Incr() int                    { c.n++; return c.n }
func (c *Counter) Add(k int) int                { c.n += k; return c.n }
func (c *Counter) Fail(msg string) (int, error) { return 0, errors.New(msg) }
func (c *Counter) Panic() int                   { panic("counter panicked") }
func (c *Counter) Exit() int                    { os.Exit(1); return 0 }
func (c *Counter) Slow(ms int) int              { time.Sleep(time.Duration(ms) * time.Millisecond); return ms }

var (
	newCounter  = Actor0(func() *Counter { return &Counter{} })
	counterFrom = Actor1(func(n int) *Counter { return &Counter{n: n} })
	badCounter  = Actor0E(func() (*Counter, error) { return nil, errors.New("no counter today") })
	incr        = Method0(newCounter, (*Counter).Incr)
	addTo       = Method1(newCounter, (*Counter).Add)
	failM       = Method1E(newCounter, (*Counter).Fail)
	panicM      = Method0(newCounter, (*Counter).Panic)
	exitM       = Method0(newCounter, (*Counter).Exit)
	slowM       = Method1(newCounter, (*Counter).Slow)

	// incrVia calls an actor from inside a task.
	incrVia = Func1(func(c Actor[*Counter]) int {
		v, err := Get(context.Background(), incr.Remote(c))
		if err != nil {
			panic(err)
		}
		return v
	})
)

// hop passes a handle on through other tasks, then calls it. It calls
// itself, so it is declared in init (still before Init runs).
var hop *Task2[Actor[*Counter], int, int]

func init() { hop = Func2(hopBody) }

func hopBody(c Actor[*Counter], depth int) int {
	if depth > 0 {
		v, err := Get(context.Background(), hop.Remote(V(c), V(depth-1)))
		if err != nil {
			panic(err)
		}
		return v
	}
	v, err := Get(context.Background(), incr.Remote(c))
	if err != nil {
		panic(err)
	}
	return v
}

func TestCounterActors(t *testing.T) {
	ctx := ctxT(t)
	counters := make([]Actor[*Counter], 10)
	for i := range counters {
		counters[i] = newCounter.Remote()
	}
	refs := make([]Ref[int], len(counters))
	for i, c := range counters {
		refs[i] = incr.Remote(c)
	}
	vs, err := GetAll(ctx, refs)
	if err != nil || fmt.Sprint(vs) != "[1 1 1 1 1 1 1 1 1 1]" {
		t.Fatalf("ten counters: %v %v", vs, err)
	}
	refs = refs[:0]
	for i := 0; i < 5; i++ {
		refs = append(refs, incr.Remote(counters[0]))
	}
	vs, err = GetAll(ctx, refs)
	if err != nil || fmt.Sprint(vs) != "[2 3 4 5 6]" {
		t.Fatalf("one counter five times: %v %v", vs, err)
	}
}

func TestActorCallsKeepOrderAcrossGoroutines(t *testing.T) {
	ctx := ctxT(t)
	c := counterFrom.Remote(V(100))
	var mu sync.Mutex
	var submitted []Ref[int]
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				mu.Lock() // defines the submission order
				submitted = append(submitted, addTo.Remote(c, V(1)))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	vs, err := GetAll(ctx, submitted)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs {
		if v != 101+i {
			t.Fatalf("call %d saw %d, want %d: calls ran out of order", i, v, 101+i)
		}
	}
}

func TestActorArgumentRefsKeepOrder(t *testing.T) {
	ctx := ctxT(t)
	c := newCounter.Remote()
	slow := sleepMs.Remote(V(200)) // resolves late
	first := addTo.Remote(c, slow)
	second := incr.Remote(c)
	if v, err := Get(ctx, second); err != nil || v != 201 {
		t.Fatalf("second call ran before the first: %v %v", v, err)
	}
	if v, err := Get(ctx, first); err != nil || v != 200 {
		t.Fatalf("first: %v %v", v, err)
	}
}

func TestActorHandlesTravel(t *testing.T) {
	ctx := ctxT(t)
	c := newCounter.Remote()
	if v, err := Get(ctx, incrVia.Remote(V(c))); err != nil || v != 1 {
		t.Fatalf("call from a task: %v %v", v, err)
	}
	if v, err := Get(ctx, hop.Remote(V(c), V(3))); err != nil || v != 2 {
		t.Fatalf("call after three hops: %v %v", v, err)
	}
	if v, err := Get(ctx, incr.Remote(c)); err != nil || v != 3 {
		t.Fatalf("back in the driver: %v %v", v, err)
	}
}

func TestActorErrorsKeepItAlive(t *testing.T) {
	ctx := ctxT(t)
	c := newCounter.Remote()
	incr.Remote(c)
	_, err := Get(ctx, failM.Remote(c, V("bad day")))
	var te *TaskError
	if !errors.As(err, &te) || te.Kind != KindApp || !strings.Contains(te.Message, "bad day") || !strings.Contains(te.Task, "Fail") {
		t.Fatalf("method error: %v", err)
	}
	_, err = Get(ctx, panicM.Remote(c))
	if !errors.As(err, &te) || te.Kind != KindPanic || !strings.Contains(te.Stack, "actor_test.go") {
		t.Fatalf("method panic: %v", err)
	}
	if v, err := Get(ctx, incr.Remote(c)); err != nil || v != 2 {
		t.Fatalf("state after errors: %v %v", v, err)
	}
}

func TestActorConstructorFailure(t *testing.T) {
	ctx := ctxT(t)
	c := badCounter.Remote()
	for i := 0; i < 2; i++ {
		_, err := Get(ctx, incr.Remote(c))
		if err == nil || !strings.Contains(err.Error(), "no counter today") {
			t.Fatalf("call %d on an actor whose constructor failed: %v", i, err)
		}
	}
}

func TestActorDeathAndKill(t *testing.T) {
	ctx := ctxT(t)
	c := newCounter.Remote()
	incr.Remote(c)
	exited := exitM.Remote(c)
	pending := incr.Remote(c) // queued behind the call that kills the process
	_, err := Get(ctx, exited)
	if !errors.Is(err, ErrActorDied) {
		t.Fatalf("actor process exited: %v", err)
	}
	if _, err := Get(ctx, pending); !errors.Is(err, ErrActorDied) {
		t.Fatalf("pending call: %v", err)
	}
	if _, err := Get(ctx, incr.Remote(c)); !errors.Is(err, ErrActorDied) {
		t.Fatalf("later call: %v", err)
	}

	k := newCounter.Remote()
	if v, err := Get(ctx, incr.Remote(k)); err != nil || v != 1 {
		t.Fatal(v, err)
	}
	running := slowM.Remote(k, V(10_000))
	start := time.Now()
	if err := Kill(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := Get(ctx, running); !errors.Is(err, ErrActorDied) || time.Since(start) > 5*time.Second {
		t.Fatalf("call on a killed actor: %v after %v", err, time.Since(start))
	}
	if _, err := Get(ctx, incr.Remote(k)); !errors.Is(err, ErrActorDied) {
		t.Fatalf("call after Kill: %v", err)
	}
}

func TestNamedActors(t *testing.T) {
	ctx := ctxT(t)
	a := newCounter.Options(Name("scoreboard"), Namespace("tests")).Remote()
	if _, err := Get(ctx, addTo.Remote(a, V(5))); err != nil {
		t.Fatal(err)
	}
	b, err := GetActor[*Counter](ctx, "scoreboard", Namespace("tests"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := Get(ctx, incr.Remote(b)); err != nil || v != 6 {
		t.Fatalf("through GetActor: %v %v", v, err)
	}
	if _, err := GetActor[*Counter](ctx, "scoreboard"); err == nil {
		t.Fatal("found a name in the wrong namespace")
	}
	if _, err := GetActor[*Counter](ctx, "nobody", Namespace("tests")); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Fatalf("unknown name: %v", err)
	}
	if _, err := GetActor[*box](ctx, "scoreboard", Namespace("tests")); !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("wrong state type: %v", err)
	}
	dup := newCounter.Options(Name("scoreboard"), Namespace("tests")).Remote()
	if dup.Err() == nil {
		t.Fatal("a second actor took a taken name")
	}
	if err := Kill(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// Gate lets its calls through once n of them are inside at once: only
// calls that run concurrently pass.
type Gate struct {
	mu  sync.Mutex
	in  int
	all chan struct{}
}

// Meet waits until n calls are inside, and says whether that happened
// within 20 s.
func (g *Gate) Meet(n int) bool {
	g.mu.Lock()
	g.in++
	if g.in == n {
		close(g.all)
	}
	all := g.all
	g.mu.Unlock()
	select {
	case <-all:
		return true
	case <-time.After(20 * time.Second):
		return false
	}
}

var (
	newGate  = Actor0(func() *Gate { return &Gate{all: make(chan struct{})} })
	gateMeet = Method1(newGate, (*Gate).Meet)
)

// TestConcurrentActor: with MaxConcurrency(4), four calls are inside the
// actor at once (each waits for the other three).
func TestConcurrentActor(t *testing.T) {
	ctx := ctxT(t)
	g := newGate.Options(MaxConcurrency(4)).Remote()
	defer Kill(ctx, g)
	refs := make([]Ref[bool], 4)
	for i := range refs {
		refs[i] = gateMeet.Remote(g, V(4))
	}
	met, err := GetAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range met {
		if !ok {
			t.Fatalf("call %d of 4 with MaxConcurrency(4) never met the others: %v", i, met)
		}
	}
}

type Phoenix struct{ calls int }

func (p *Phoenix) Pid() int { p.calls++; return os.Getpid() }

// DieOnce exits the process the first time a marker file is missing.
func (p *Phoenix) DieOnce(marker string) int {
	if _, err := os.Stat(marker); err != nil {
		_ = os.WriteFile(marker, nil, 0o644)
		os.Exit(5)
	}
	p.calls++
	return p.calls
}

var (
	newPhoenix = Actor0(func() *Phoenix { return &Phoenix{} })
	phoenixPid = Method0(newPhoenix, (*Phoenix).Pid)
	dieOnceM   = Method1(newPhoenix, (*Phoenix).DieOnce)
)

func TestActorRestarts(t *testing.T) {
	ctx := ctxT(t)
	p := newPhoenix.Options(MaxRestarts(1)).Remote()
	pid1, err := Get(ctx, phoenixPid.Remote(p))
	if err != nil {
		t.Fatal(err)
	}
	// Without task retries, the call that killed the process fails...
	_, err = Get(ctx, dieOnceM.Remote(p, V(t.TempDir()+"/x")))
	if !errors.Is(err, ErrActorDied) {
		t.Fatalf("call in flight at death: %v", err)
	}
	// ...and the actor comes back in a new process, its constructor run again.
	pid2, err := Get(ctx, phoenixPid.Remote(p))
	if err != nil || pid2 == pid1 {
		t.Fatalf("after restart: pid %d (was %d), %v", pid2, pid1, err)
	}
	// The one restart is used up: the next death is final.
	_, _ = Get(ctx, dieOnceM.Remote(p, V(t.TempDir()+"/y")))
	if _, err := Get(ctx, phoenixPid.Remote(p)); !errors.Is(err, ErrActorDied) {
		t.Fatalf("restarts exhausted: %v", err)
	}
}

func TestActorTaskRetries(t *testing.T) {
	ctx := ctxT(t)
	p := newPhoenix.Options(MaxRestarts(-1), MaxTaskRetries(1)).Remote()
	marker := t.TempDir() + "/m"
	first := dieOnceM.Remote(p, V(marker)) // kills the first process
	second := dieOnceM.Remote(p, V(marker))
	v1, err1 := Get(ctx, first)
	v2, err2 := Get(ctx, second)
	if err1 != nil || err2 != nil || v1 != 1 || v2 != 2 {
		t.Fatalf("retried in order on the new process: %v %v, %v %v", v1, err1, v2, err2)
	}
}

// restartFromTask sees an actor die and come back, from a task that only
// borrows its handle.
var restartFromTask = Func2(func(p Actor[*Phoenix], marker string) string {
	ctx := context.Background()
	pid1, err := Get(ctx, phoenixPid.Remote(p))
	if err != nil {
		return "first: " + err.Error()
	}
	if _, err := Get(ctx, dieOnceM.Remote(p, V(marker))); !errors.Is(err, ErrActorDied) {
		return fmt.Sprintf("death: %v", err)
	}
	pid2, err := Get(ctx, phoenixPid.Remote(p))
	if err != nil {
		return "after restart: " + err.Error()
	}
	if pid1 == pid2 {
		return "same process after restart"
	}
	return "ok"
})

func TestActorRestartSeenByBorrower(t *testing.T) {
	ctx := ctxT(t)
	p := newPhoenix.Options(MaxRestarts(1)).Remote()
	if got, err := Get(ctx, restartFromTask.Remote(V(p), V(t.TempDir()+"/b"))); err != nil || got != "ok" {
		t.Fatalf("%q %v", got, err)
	}
}
