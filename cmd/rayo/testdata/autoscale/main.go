// Command autoscale is a driver for the autoscaling tests. "grow DIR [N]"
// runs N (default three) 1-CPU tasks that each wait, at a barrier of
// files in DIR, until all N run at once, so that the cluster must offer
// N CPUs together; it prints how many nodes they ran on and how long after
// submission they started. "big" submits a task no node type can hold.
// "wide" runs a 2-CPU task. "request N" leaves a standing request for N bundles of 1 CPU.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rayo-dev/rayo"
)

// arrive marks this task's start in dir and waits until n tasks have; it
// returns the node it ran on and when it started (Unix ms).
var arrive = rayo.Func3E(func(dir string, i, n int) (string, error) {
	start := time.Now().UnixMilli()
	if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), nil, 0o600); err != nil {
		return "", err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			return "", err
		}
		if len(m) >= n {
			return fmt.Sprintf("%s@%d", rayo.NodeID(), start), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("only %d of %d tasks ran at once", len(m), n)
		}
		time.Sleep(20 * time.Millisecond) // a barrier across processes: polling the folder
	}
}, rayo.NumCPUs(1))

var (
	big  = rayo.Func0(func() int { return 1 }, rayo.NumCPUs(64))
	wide = rayo.Func0(func() string { return rayo.NodeID() }, rayo.NumCPUs(2))
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(args []string) (err error) {
	if err := rayo.Init(); err != nil { // RAYO_ADDRESS joins the cluster
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	switch args[0] {
	case "grow":
		n := 3
		if len(args) > 2 {
			if n, err = strconv.Atoi(args[2]); err != nil || n < 1 {
				return fmt.Errorf("grow DIR N: N %q: want a count above 0", args[2])
			}
		}
		submitted := time.Now().UnixMilli()
		refs := make([]rayo.Ref[string], n)
		for i := range refs {
			refs[i] = arrive.Remote(rayo.V(args[1]), rayo.V(i), rayo.V(n))
		}
		got, err := rayo.GetAll(ctx, refs)
		if err != nil {
			return err
		}
		nodes := map[string]bool{}
		var last int64
		for _, g := range got {
			node, at, _ := strings.Cut(g, "@")
			nodes[node] = true
			ms, _ := strconv.ParseInt(at, 10, 64)
			last = max(last, ms)
		}
		fmt.Printf("nodes=%d\nall_running_ms=%d\n", len(nodes), last-submitted)
	case "big":
		start := time.Now()
		_, err := rayo.Get(ctx, big.Remote())
		fmt.Printf("infeasible=%v\nms=%d\nerr=%v\n", errors.Is(err, rayo.ErrInfeasible), time.Since(start).Milliseconds(), err)
	case "wide": // a 2-CPU task
		start := time.Now()
		node, err := rayo.Get(ctx, wide.Remote())
		if err != nil {
			return err
		}
		fmt.Printf("node=%s\nms=%d\n", node, time.Since(start).Milliseconds())
	case "request": // request N: a standing request for N bundles of 1 CPU (0: withdraw it)
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		bundles := make([]rayo.Bundle, n)
		for i := range bundles {
			bundles[i] = rayo.Bundle{"CPU": 1}
		}
		if err := rayo.RequestResources(ctx, bundles); err != nil {
			return err
		}
		fmt.Printf("requested=%d\n", n)
	default:
		return fmt.Errorf("unknown mode %q", args[0])
	}
	return nil
}
