// Dashboard shows what runs where, as the seed's dashboard section does:
// rayo.Init starts an API server next to the embedded cluster (the web
// dashboard at its root, the state API under /api/v0/, Prometheus metrics
// at /metrics). The program runs some tasks and an actor, then reads the
// state API the way `rayo summary` does, asks for the cluster's
// resources, and writes a timeline that Perfetto opens.
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
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	// In a worker process (this same executable, started by rayo) Init
	// serves tasks and never returns, so it comes first.
	if err := rayo.Init(rayo.NumCPUs(2)); err != nil {
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); e != nil && err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return demos.Observe(ctx)
}
