// Command drain is a driver for the drain test: it runs a task that needs
// the "drainme" resource (one node has it), which notes each attempt in
// DIR/attempts and holds until DIR/release exists; then a task anywhere.
// It prints the results.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rayo-dev/rayo"
)

var (
	hold = rayo.Func1E(func(dir string) (int, error) {
		f, err := os.OpenFile(filepath.Join(dir, "attempts"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return 0, err
		}
		_, _ = fmt.Fprintln(f, os.Getpid())
		_ = f.Close()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
				return 7, nil
			}
		}
		return 0, errors.New("never released")
	}, rayo.Name("hold"), rayo.Resources(map[string]float64{"drainme": 1}))
	double = rayo.Func1(func(x int) int { return 2 * x }, rayo.Name("double"))
)

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(dir string) (err error) {
	if err := rayo.Init(); err != nil { // RAYO_ADDRESS joins the cluster
		return err
	}
	defer func() {
		if e := rayo.Shutdown(); err == nil {
			err = e
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	v, err := rayo.Get(ctx, hold.Remote(rayo.V(dir)))
	if err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	fmt.Println("hold", v)
	w, err := rayo.Get(ctx, double.Remote(rayo.V(21)))
	if err != nil {
		return fmt.Errorf("double: %w", err)
	}
	fmt.Println("double", w)
	return nil
}
