// Tour walks through the whole Ray tutorial in one program: immutable
// objects (put and get), remote functions with values and refs,
// parallelism, chained dependencies, a tree reduction, remote functions
// within remote functions, multiple results, a computation graph, waiting
// for the first results, the sum-of-squares quick start, and actors:
// stateful counters and the GoalsScored walkthrough, and what the
// dashboard and the state API show of it all. Each section
// is the body of one of the standalone examples next to this one.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/examples/internal/demos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tour:", err)
		os.Exit(1)
	}
}

type section struct {
	title string
	about string
	run   func(context.Context) error
}

func run() (err error) {
	// In a worker process (this same executable, started by rayo) Init
	// serves tasks and never returns, so it comes first. Ten CPUs let the
	// parallel sections run all their tasks at once.
	if err := rayo.Init(rayo.NumCPUs(10)); err != nil {
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); e != nil && err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	sections := []section{
		{"put and get", "Put stores an immutable object and returns a ref; Get reads it back.",
			demos.PutGet},
		{"remote functions", "add(1, 2) as a task, each argument a value or a ref.",
			demos.Remote},
		{"parallelism", "Four half-second sleeps, as plain calls and then as tasks.",
			func(ctx context.Context) error { return demos.Parallel(ctx, 4, 500*time.Millisecond) }},
		{"dependencies", "f(f(f(0))) with f(x) = x+1: each task takes the last one's ref.",
			demos.Chain},
		{"tree reduce", "100 tasks draw 1000 normal samples each; aggregate tasks add them pairwise.",
			demos.TreeReduce},
		{"remote functions within remote functions", "Five experiments, each running ten sub-experiment tasks.",
			demos.Nested},
		{"multiple results", "One task, three results, three refs.",
			demos.MultiReturn},
		{"computation graph", "Two zeros tasks feed a dot task.",
			demos.Graph},
		{"wait", "Tasks of different lengths, reported as each finishes.",
			func(ctx context.Context) error { return demos.Wait(ctx) }},
		{"sum of squares", "sqrt(sum of x*x for x in [1, 10,000,000)), locally then as one task per core.",
			func(ctx context.Context) error { return demos.SumSquares(ctx, runtime.NumCPU()) }},
		{"actors", "Ten counter actors incremented once each, then the first one five more times.",
			demos.Counters},
		{"goals scored", "A GoalsScored actor scores; then a named one is found by name and killed.",
			demos.Goals},
		{"see what runs where", "Tasks and an actor, then the state API's summaries, the cluster's resources and a timeline.",
			demos.Observe},
	}
	for i, s := range sections {
		if i > 0 {
			fmt.Println()
		}
		fmt.Printf("== %s ==\n", s.title)
		fmt.Println(s.about)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	return nil
}
