// Sumsquares is the quick-start sum-of-squares tutorial: the same
// compute-bound function run as plain calls and then as one task per core;
// each task prints its pid and parent pid, which the driver shows prefixed
// with the worker's name and pid.
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
		fmt.Fprintln(os.Stderr, "sumsquares:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	// In a worker process (this same executable, started by rayo) Init
	// serves tasks and never returns, so it comes first.
	if err := rayo.Init(); err != nil {
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); e != nil && err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return demos.SumSquares(ctx, runtime.NumCPU())
}
