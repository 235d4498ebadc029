package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rayo-dev/rayo"
)

// attempt records, in dir/attempts-<i>, that an attempt of task i began
// on this node, sleeps ms, then records that it ended (a line each, so
// that the test counts how often the task ran, and where).
var attempt = rayo.Func3(func(dir string, i, ms int) string {
	note := func(what string) {
		f, err := os.OpenFile(filepath.Join(dir, "attempts-"+strconv.Itoa(i)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "%s %s %d\n", what, rayo.NodeID(), os.Getpid())
	}
	note("begin")
	time.Sleep(time.Duration(ms) * time.Millisecond)
	note("end")
	return rayo.NodeID()
})

// fenceMode runs the modes of the fencing tests.
func fenceMode(ctx context.Context, mode string, args []string) error {
	switch mode {
	case "fence-work":
		// n tasks, preferring the node args[1], each recording its
		// attempts in the folder args[0] and running ms; they retry.
		dir, victim := args[0], args[1]
		n, _ := strconv.Atoi(args[2])
		ms, _ := strconv.Atoi(args[3])
		refs := make([]rayo.Ref[string], n)
		for i := range refs {
			refs[i] = attempt.Options(rayo.Name(fmt.Sprintf("fence-%d", i)), rayo.NodeAffinity(victim, true), rayo.MaxRetries(3)).
				Remote(rayo.V(dir), rayo.V(i), rayo.V(ms))
		}
		fmt.Printf("submitted=%d\n", n)
		nodes, err := rayo.GetAll(ctx, refs)
		if err != nil {
			return err
		}
		fmt.Println("nodes=" + distinct(nodes))
	case "fence-victim":
		// A driver on the node that will be fenced: a task in flight on
		// it, then calls after the fencing.
		dir := args[0]
		ref := attempt.Options(rayo.Name("victim-driver")).Remote(rayo.V(dir), rayo.V(-1), rayo.V(60_000))
		fmt.Println("ready=1") // the test waits for its attempts file
		_, err := rayo.Get(ctx, ref)
		fmt.Printf("fenced=%v\n", errors.Is(err, rayo.ErrNodeFenced))
		fmt.Printf("fenced_err=%q\n", fmt.Sprint(err))
		_, err = rayo.Get(ctx, where.Remote())
		fmt.Printf("after=%v\n", errors.Is(err, rayo.ErrNodeFenced))
		fmt.Printf("after_err=%q\n", fmt.Sprint(err))
	}
	return nil
}
