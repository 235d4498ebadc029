// Command detached is a driver for the cluster tests: "create" makes a
// detached, named counter and increments it; "incr" finds it by name and
// increments it; "kill" stops it; "busy" submits more long tasks than the
// cluster has CPUs. Each prints what it saw.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rayo-dev/rayo"
)

// Keeper is a counter that outlives its driver.
type Keeper struct{ n int }

// Incr adds one and returns the count.
func (k *Keeper) Incr() int { k.n++; return k.n }

var (
	newKeeper = rayo.Actor0(func() *Keeper { return &Keeper{} })
	incr      = rayo.Method0(newKeeper, (*Keeper).Incr)
	double    = rayo.Func1(func(x int) int { fmt.Println("doubling", x); return 2 * x }, rayo.Name("double"))
	nap       = rayo.Func1(func(ms int) int { time.Sleep(time.Duration(ms) * time.Millisecond); return ms })
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(mode string) (err error) {
	if err := rayo.Init(); err != nil { // RAYO_ADDRESS joins the cluster
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err := rayo.Get(ctx, double.Remote(rayo.V(21))); err != nil || v != 42 {
		return fmt.Errorf("a task on the cluster: %v %v", v, err)
	}
	if mode == "busy" {
		// More work than CPUs: the rest waits, as demand the cluster shows.
		refs := make([]rayo.Ref[int], 3)
		for i := range refs {
			refs[i] = nap.Remote(rayo.V(20_000))
		}
		fmt.Println("submitted")
		_, err := rayo.GetAll(ctx, refs)
		return err
	}
	var k rayo.Actor[*Keeper]
	switch mode {
	case "create":
		fmt.Println("dashboard", rayo.DashboardURL())
		k = newKeeper.Options(rayo.Name("keeper"), rayo.Detached()).Remote()
	default:
		if k, err = rayo.GetActor[*Keeper](ctx, "keeper"); err != nil {
			return err
		}
	}
	if mode == "kill" {
		if err := rayo.Kill(ctx, k); err != nil {
			return err
		}
		fmt.Println("killed")
		return nil
	}
	n, err := rayo.Get(ctx, incr.Remote(k))
	if err != nil {
		return err
	}
	fmt.Println("count", n)
	return nil
}
