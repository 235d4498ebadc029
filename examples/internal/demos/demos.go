// Package demos holds the bodies of rayo's tutorial examples: one exported
// function per Ray concept, and the remote functions and actors they call.
//
// Each example under examples/ is a small main package that starts rayo
// and calls one of these; examples/tour calls them all in one program.
// The remote functions are package-level variables, so every executable
// that imports this package (and so every worker it starts, which runs the
// same executable) registers them before main runs.
//
// Every demo prints its results with fmt.Println to standard output and
// returns the first error it meets. They expect rayo.Init to have been
// called.
package demos

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	"github.com/rayo-dev/rayo"
)

// Remote functions. Named Go functions (rather than closures) give the
// tasks readable names in errors and in the "(name pid=N)" log prefix.
var (
	addTask           = rayo.Func2(add)
	sleepTask         = rayo.Func1(sleepMs)
	incTask           = rayo.Func1(inc)
	generateDataTask  = rayo.Func1(generateData)
	aggregateDataTask = rayo.Func2(aggregateData)
	subExperimentTask = rayo.Func2(subExperiment)
	runExperimentTask = rayo.Func1E(runExperiment)
	returnMultiple    = rayo.Func0x3(oneTwoThree)
	zerosTask         = rayo.Func1E(Zeros)
	dotTask           = rayo.Func2E(Dot)
	sumSquaresTask    = rayo.Func2(sumSquaresReporting)
)

// --- put and get -------------------------------------------------------

// PutGet stores values with Put and reads them back with Get and GetAll.
func PutGet(ctx context.Context) error {
	xs, err := rayo.Get(ctx, rayo.Put(ctx, []int{1, 2, 3}))
	if err != nil {
		return fmt.Errorf("get a list: %w", err)
	}
	fmt.Println(xs)

	s, err := rayo.Get(ctx, rayo.Put(ctx, "example"))
	if err != nil {
		return fmt.Errorf("get a string: %w", err)
	}
	fmt.Println(s)

	refs := make([]rayo.Ref[int], 10)
	for i := range refs {
		refs[i] = rayo.Put(ctx, i)
		if err := refs[i].Err(); err != nil {
			return fmt.Errorf("put %d: %w", i, err)
		}
	}
	vs, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return fmt.Errorf("get all: %w", err)
	}
	fmt.Println(vs)
	return nil
}

// --- remote functions --------------------------------------------------

func add(a, b int) int { return a + b }

// Remote calls add(1, 2) as a task with each argument passed by value or by
// ref, in every combination; all four print 3.
func Remote(ctx context.Context) error {
	one, two := rayo.Put(ctx, 1), rayo.Put(ctx, 2)
	calls := []rayo.Ref[int]{
		addTask.Remote(rayo.V(1), rayo.V(2)),
		addTask.Remote(rayo.V(1), two),
		addTask.Remote(one, rayo.V(2)),
		addTask.Remote(one, two),
	}
	for i, r := range calls {
		v, err := rayo.Get(ctx, r)
		if err != nil {
			return fmt.Errorf("add call %d: %w", i, err)
		}
		fmt.Println(v)
	}
	return nil
}

// --- parallelism -------------------------------------------------------

// sleepMs sleeps for ms milliseconds and returns ms.
func sleepMs(ms int) int {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms
}

// Parallel runs n sleeps of d first one after the other as plain calls,
// then as n tasks at once, and prints how long each took. The tasks only
// overlap if rayo has n CPUs (rayo.NumCPUs). Options, if any, apply to the
// sleep tasks.
func Parallel(ctx context.Context, n int, d time.Duration, opts ...rayo.Option) error {
	ms := int(d / time.Millisecond)
	sleepTask := sleepTask.Options(opts...)

	start := time.Now()
	for range n {
		sleepMs(ms)
	}
	fmt.Printf("serial: %.2fs\n", time.Since(start).Seconds())

	start = time.Now()
	refs := make([]rayo.Ref[int], n)
	for i := range refs {
		refs[i] = sleepTask.Remote(rayo.V(ms))
	}
	if _, err := rayo.GetAll(ctx, refs); err != nil {
		return fmt.Errorf("sleep tasks: %w", err)
	}
	fmt.Printf("parallel: %.2fs\n", time.Since(start).Seconds())
	return nil
}

// --- dependencies ------------------------------------------------------

func inc(x int) int { return x + 1 }

// Chain computes f(f(f(0))) with f(x) = x+1, each call a task taking the
// previous task's ref: the tasks run one after the other.
func Chain(ctx context.Context) error {
	x := incTask.Remote(rayo.V(0))
	y := incTask.Remote(x)
	z := incTask.Remote(y)
	v, err := rayo.Get(ctx, z)
	if err != nil {
		return fmt.Errorf("chain: %w", err)
	}
	fmt.Println(v)
	return nil
}

// --- tree reduce -------------------------------------------------------

// Sizes of the tree-reduce demo.
const (
	NumBlocks   = 100  // tasks generating data
	SamplesEach = 1000 // normal samples per task
)

// generateData returns SamplesEach standard normal samples drawn from a
// generator seeded with seed, so the same seed gives the same samples in
// any process.
func generateData(seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 0x7261796f)) // "rayo"
	out := make([]float64, SamplesEach)
	for i := range out {
		out[i] = rng.NormFloat64()
	}
	return out
}

// aggregateData adds two vectors elementwise into a new one: its arguments
// may be read-only views of the shared-memory store, so it never writes to
// them.
func aggregateData(x, y []float64) []float64 {
	n := min(len(x), len(y))
	out := make([]float64, n)
	for i := range out {
		out[i] = x[i] + y[i]
	}
	return out
}

// TreeReduce launches NumBlocks data-generating tasks and sums their
// vectors pairwise with aggregate tasks: pop the first two refs, push the
// ref of their sum, until one is left. It prints the sum of the final
// vector and whether it matches the same sum computed directly here.
func TreeReduce(ctx context.Context) error {
	data := make([]rayo.Ref[[]float64], NumBlocks)
	for i := range data {
		data[i] = generateDataTask.Remote(rayo.V(uint64(i)))
	}
	for len(data) > 1 {
		x, y := data[0], data[1]
		data = append(data[2:], aggregateDataTask.Remote(x, y))
	}
	vec, err := rayo.Get(ctx, data[0])
	if err != nil {
		return fmt.Errorf("tree reduce: %w", err)
	}
	if len(vec) != SamplesEach {
		return fmt.Errorf("tree reduce: got %d values, want %d", len(vec), SamplesEach)
	}
	got := 0.0
	for _, v := range vec {
		got += v
	}
	runtime.KeepAlive(data[0]) // vec may be a view of the stored object

	want := 0.0
	for i := range NumBlocks {
		for _, v := range generateData(uint64(i)) {
			want += v
		}
	}
	fmt.Printf("sum: %.3f\n", got)
	fmt.Println("matches direct sum:", math.Abs(got-want) <= 1e-6*math.Max(1, math.Abs(want)))
	return nil
}

// --- remote functions within remote functions --------------------------

// subExperiment runs the jth sub-experiment of the ith experiment.
func subExperiment(i, j int) int { return i + j }

// runExperiment runs inside a worker: it launches ten sub-experiment tasks
// of its own and sums their results.
func runExperiment(i int) (int, error) {
	refs := make([]rayo.Ref[int], 10)
	for j := range refs {
		refs[j] = subExperimentTask.Remote(rayo.V(i), rayo.V(j))
	}
	vs, err := rayo.GetAll(context.Background(), refs)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vs {
		sum += v
	}
	return sum, nil
}

// Nested runs five experiments, each of which fans out into ten nested
// tasks.
func Nested(ctx context.Context) error {
	refs := make([]rayo.Ref[int], 5)
	for i := range refs {
		refs[i] = runExperimentTask.Remote(rayo.V(i))
	}
	vs, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return fmt.Errorf("experiments: %w", err)
	}
	fmt.Println(vs)
	return nil
}

// --- multiple return values --------------------------------------------

func oneTwoThree() (int, int, int) { return 1, 2, 3 }

// MultiReturn calls a task with three results, which come back as three
// refs.
func MultiReturn(ctx context.Context) error {
	aRef, bRef, cRef := returnMultiple.Remote()
	var vs [3]int
	for i, r := range []rayo.Ref[int]{aRef, bRef, cRef} {
		v, err := rayo.Get(ctx, r)
		if err != nil {
			return fmt.Errorf("result %d: %w", i, err)
		}
		vs[i] = v
	}
	fmt.Println(vs[0], vs[1], vs[2])
	return nil
}

// --- computation graph -------------------------------------------------

// Matrix is a dense row-major matrix.
type Matrix struct {
	Rows, Cols int
	Data       []float64
}

// Sum is the sum of m's elements.
func (m Matrix) Sum() float64 {
	s := 0.0
	for _, v := range m.Data {
		s += v
	}
	return s
}

// Zeros returns a matrix of zeros of the given shape [rows, cols].
func Zeros(shape []int) (Matrix, error) {
	if len(shape) != 2 || shape[0] < 0 || shape[1] < 0 {
		return Matrix{}, fmt.Errorf("zeros: bad shape %v", shape)
	}
	return Matrix{Rows: shape[0], Cols: shape[1], Data: make([]float64, shape[0]*shape[1])}, nil
}

// Dot returns the matrix product a·b.
func Dot(a, b Matrix) (Matrix, error) {
	if a.Cols != b.Rows {
		return Matrix{}, fmt.Errorf("dot: shapes %dx%d and %dx%d do not match", a.Rows, a.Cols, b.Rows, b.Cols)
	}
	c := Matrix{Rows: a.Rows, Cols: b.Cols, Data: make([]float64, a.Rows*b.Cols)}
	for i := range a.Rows {
		for k := range a.Cols {
			aik := a.Data[i*a.Cols+k]
			for j := range b.Cols {
				c.Data[i*c.Cols+j] += aik * b.Data[k*b.Cols+j]
			}
		}
	}
	return c, nil
}

// Graph builds the seed's computation graphs: ten independent zeros tasks
// (which may all run in parallel), then two zeros tasks feeding one dot
// task, which waits for both.
func Graph(ctx context.Context) error {
	independent := make([]rayo.Ref[Matrix], 10)
	for i := range independent {
		independent[i] = zerosTask.Remote(rayo.V([]int{100, 100}))
	}
	ms, err := rayo.GetAll(ctx, independent)
	if err != nil {
		return fmt.Errorf("zeros: %w", err)
	}
	fmt.Printf("%d independent zeros tasks, each %dx%d\n", len(ms), ms[0].Rows, ms[0].Cols)

	aRef := zerosTask.Remote(rayo.V([]int{10, 10}))
	bRef := zerosTask.Remote(rayo.V([]int{10, 10}))
	cRef := dotTask.Remote(aRef, bRef)
	c, err := rayo.Get(ctx, cRef)
	if err != nil {
		return fmt.Errorf("dot: %w", err)
	}
	fmt.Printf("shape: %dx%d sum: %g\n", c.Rows, c.Cols, c.Sum())
	runtime.KeepAlive(cRef)
	return nil
}

// --- wait --------------------------------------------------------------

// WaitDurations are the lengths, in milliseconds, of the Wait demo's tasks:
// far enough apart that they finish in a fixed order.
var WaitDurations = []int{600, 200, 400, 0}

// Wait starts tasks of different lengths and uses rayo.Wait with
// numReturns 1 to report each as it finishes. All the tasks must be able
// to run at once (rayo.NumCPUs(len(WaitDurations)) or more). Options, if
// any, apply to the tasks.
func Wait(ctx context.Context, opts ...rayo.Option) error {
	sleepTask := sleepTask.Options(opts...)
	// Start one worker per task first, so that process start-up does not
	// skew the tasks' finishing times.
	warm := make([]rayo.Ref[int], len(WaitDurations))
	for i := range warm {
		warm[i] = sleepTask.Remote(rayo.V(50))
	}
	if _, err := rayo.GetAll(ctx, warm); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	index := make(map[string]int, len(WaitDurations))
	remaining := make([]rayo.Ref[int], len(WaitDurations))
	for i, ms := range WaitDurations {
		remaining[i] = sleepTask.Remote(rayo.V(ms))
		if err := remaining[i].Err(); err != nil {
			return fmt.Errorf("task %d: %w", i, err)
		}
		index[remaining[i].ID()] = i
	}
	for len(remaining) > 0 {
		ready, rest, err := rayo.Wait(ctx, remaining, 1)
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		if len(ready) == 0 { // ctx ended
			return fmt.Errorf("wait: %w with %d tasks unfinished", ctx.Err(), len(remaining))
		}
		for _, r := range ready {
			i := index[r.ID()]
			if _, err := rayo.Get(ctx, r); err != nil {
				return fmt.Errorf("task %d: %w", i, err)
			}
			fmt.Printf("finished: task %d (%dms)\n", i, WaitDurations[i])
		}
		remaining = rest
	}
	return nil
}

// --- sum of squares ----------------------------------------------------

// SumSquaresFrom and SumSquaresTo bound the range [from, to) the
// sum-of-squares demo works on.
const SumSquaresFrom, SumSquaresTo = 1, 10_000_000

// sumSquares returns sqrt(sum of x*x for x in [a, b)), for 0 <= a <= b <
// 2^32. It sums exactly in 128 bits, so it matches an exact computation
// however long the range.
func sumSquares(a, b int) float64 {
	var hi, lo uint64
	for x := uint64(a); x < uint64(b); x++ {
		var carry uint64
		lo, carry = bits.Add64(lo, x*x, 0)
		hi += carry
	}
	return math.Sqrt(float64(hi)*(1<<64) + float64(lo))
}

// sumSquaresReporting is the task version of sumSquares: it also prints
// the process it runs in and that process's parent, which show up in the
// driver prefixed with the task's name and pid.
func sumSquaresReporting(a, b int) float64 {
	fmt.Printf("pid=%d; ppid=%d\n", os.Getpid(), os.Getppid())
	return sumSquares(a, b)
}

// SumSquares computes sumSquares n times as plain calls, then as n tasks
// at once, printing each value and the time each way took.
func SumSquares(ctx context.Context, n int) error {
	a, b := SumSquaresFrom, SumSquaresTo
	fmt.Println("number of cores:", n)

	start := time.Now()
	for range n {
		fmt.Printf("local return value: %.2f\n", sumSquares(a, b))
	}
	fmt.Printf("time elapsed for local calls: %.2fs\n", time.Since(start).Seconds())

	start = time.Now()
	refs := make([]rayo.Ref[float64], n)
	for i := range refs {
		refs[i] = sumSquaresTask.Remote(rayo.V(a), rayo.V(b))
	}
	vs, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return fmt.Errorf("sum of squares: %w", err)
	}
	for _, v := range vs {
		fmt.Printf("remote task returned value: %.2f\n", v)
	}
	fmt.Printf("time elapsed for remote tasks: %.2fs\n", time.Since(start).Seconds())
	return nil
}
