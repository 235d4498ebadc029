// Wait shows rayo.Wait: of tasks of different lengths, running at once,
// Wait with numReturns 1 hands back each as soon as it finishes, so they
// are reported in the order they end, not the order they started.
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
		fmt.Fprintln(os.Stderr, "wait:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	// In a worker process (this same executable, started by rayo) Init
	// serves tasks and never returns, so it comes first.
	if err := rayo.Init(rayo.NumCPUs(4)); err != nil {
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); e != nil && err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return demos.Wait(ctx)
}
