// Remote shows remote functions: add.Remote returns a ref at once and runs
// the call as a task, and each argument may be a value (rayo.V) or the ref
// of an object made by rayo.Put; all four mixes give the same result.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/examples/internal/demos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "remote:", err)
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
	return demos.Remote(ctx)
}
