// Command jobcred is the driver of the job credential tests: it shows
// what a job's workers hold, and keeps an actor that another job's
// credential tries to kill.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/rayo-dev/rayo"
)

// environ is a worker's whole environment.
var environ = rayo.Func0(func() string { return strings.Join(os.Environ(), "\n") })

// Keeper counts its calls.
type Keeper struct{ N int }

// Incr counts one more call.
func (k *Keeper) Incr() int { k.N++; return k.N }

// Job is the job of the worker the actor runs in.
func (k *Keeper) Job() string { return os.Getenv("RAYO_JOB") }

var newKeeper = rayo.Actor0(func() *Keeper { return &Keeper{} })
var incr = rayo.Method0(newKeeper, (*Keeper).Incr)
var jobOf = rayo.Method0(newKeeper, (*Keeper).Job)

func main() {
	if err := rayo.Init(); err != nil {
		fmt.Println("error=" + err.Error())
		os.Exit(1)
	}
	defer rayo.Shutdown()
	if err := run(context.Background(), os.Args[1], os.Args[2]); err != nil {
		fmt.Println("error=" + err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, mode, node string) error {
	switch mode {
	case "env":
		// A task on node: its worker's environment.
		env, err := rayo.Get(ctx, environ.Options(rayo.NodeAffinity(node, false)).Remote())
		if err != nil {
			return err
		}
		fmt.Println("worker_env=" + base64.StdEncoding.EncodeToString([]byte(env)))
	case "actor":
		// A named detached actor on node (the control store records its
		// worker), called before and after the test tries to kill it.
		a := newKeeper.Options(rayo.Name("victim"), rayo.Namespace("jobcred"), rayo.Detached(), rayo.NodeAffinity(node, false)).Remote()
		n, err := rayo.Get(ctx, incr.Remote(a))
		if err != nil {
			return err
		}
		job, err := rayo.Get(ctx, jobOf.Remote(a))
		if err != nil {
			return err
		}
		fmt.Printf("before=%d\njob=%s\n", n, job)
		fmt.Println("ready=1")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		if n, err = rayo.Get(ctx, incr.Remote(a)); err != nil {
			return err
		}
		fmt.Printf("after=%d\n", n)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return nil
}
