// Command rebuild is the driver of TestRebuildWhereACopyIs: an object is
// rebuilt from lineage on the node that holds a copy of it, pulled there
// by a reader before the object's node died.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rayo-dev/rayo"
)

// fill makes n floats of value v, and leaves a file named after its node
// and process in dir: one for each run.
var fill = rayo.Func3(func(dir string, n int, v float64) []float64 {
	_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", rayo.NodeID(), os.Getpid())), nil, 0o644)
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
})

// lenWhere is the length of xs, its first value and the node that read
// it.
var lenWhere = rayo.Func1(func(xs []float64) string {
	return fmt.Sprintf("%d*%v@%s", len(xs), xs[0], rayo.NodeID())
})

func main() {
	if err := rayo.Init(); err != nil {
		fmt.Println("err=" + err.Error())
		os.Exit(1)
	}
	err := run(os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Println("err=" + err.Error())
	}
	rayo.Shutdown()
	if err != nil {
		os.Exit(1)
	}
}

// run makes an object on holder, has a task on reader read it (a copy is
// pulled there), waits for the test to kill holder, and reads the object:
// its owner, this driver, rebuilds it where the resource it needs is:
// on reader.
func run(dir, holder, reader string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Only the nodes other than the head have "spot": when holder dies,
	// the rebuild runs on reader.
	obj := fill.Options(rayo.NodeAffinity(holder, true), rayo.MaxRetries(-1), rayo.Resources(map[string]float64{"spot": 1})).Remote(rayo.V(dir), rayo.V(1<<17), rayo.V(7.0))
	got, err := rayo.Get(ctx, lenWhere.Options(rayo.NodeAffinity(reader, false)).Remote(obj))
	if err != nil {
		return fmt.Errorf("first read: %w", err)
	}
	fmt.Println("copied=" + got)
	bufio.NewReader(os.Stdin).ReadString('\n') // the test kills holder
	xs, err := rayo.Get(ctx, obj)
	if err != nil {
		return fmt.Errorf("read after the holder died: %w", err)
	}
	fmt.Printf("rebuilt=%d*%v\n", len(xs), xs[0])
	// The copy the rebuild took as its own is the object's primary now:
	// another reader on that node finds it.
	got, err = rayo.Get(ctx, lenWhere.Options(rayo.NodeAffinity(reader, false)).Remote(obj))
	if err != nil {
		return fmt.Errorf("read of the rebuilt object: %w", err)
	}
	fmt.Println("read_again=" + got)
	return nil
}
