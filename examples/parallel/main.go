// Parallel shows that tasks run asynchronously: ten one-second sleeps take
// ten seconds as plain calls and about one second as ten tasks on a node
// with ten CPUs.
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
		fmt.Fprintln(os.Stderr, "parallel:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	// In a worker process (this same executable, started by rayo) Init
	// serves tasks and never returns, so it comes first.
	if err := rayo.Init(rayo.NumCPUs(10)); err != nil {
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); e != nil && err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return demos.Parallel(ctx, 10, time.Second)
}
