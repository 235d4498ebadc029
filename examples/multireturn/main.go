// Multireturn shows a remote function with several results: one task
// returns three values, which come back as three refs.
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
		fmt.Fprintln(os.Stderr, "multireturn:", err)
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
	return demos.MultiReturn(ctx)
}
