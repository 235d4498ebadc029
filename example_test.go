package rayo_test

import (
	"context"
	"fmt"

	"github.com/rayo-dev/rayo"
)

var square = rayo.Func1(func(x int) int { return x * x })

// The cluster is started by TestMain (rayo.Init); a program calls
// rayo.Init first thing in main and defers rayo.Shutdown.
func Example() {
	ctx := context.Background()
	refs := make([]rayo.Ref[int], 5)
	for i := range refs {
		refs[i] = square.Remote(rayo.V(i))
	}
	squares, err := rayo.GetAll(ctx, refs)
	fmt.Println(squares, err)

	total := rayo.Put(ctx, 100)
	sum := rayo.Func2(func(a, b int) int { return a + b }) // declared late: an error, not a panic
	fmt.Println(sum.Remote(total, rayo.V(1)).Err() != nil)
	// Output:
	// [0 1 4 9 16] <nil>
	// true
}

// A placement group reserves resources at once; tasks placed in one of its
// bundles use them.
func ExampleNewPlacementGroup() {
	ctx := context.Background()
	pg, err := rayo.NewPlacementGroup(ctx, []rayo.Bundle{{"CPU": 1}, {"CPU": 1}}, rayo.StrategyPack)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pg.Remove(ctx)
	if err := pg.Ready(ctx); err != nil {
		fmt.Println(err)
		return
	}
	v, err := rayo.Get(ctx, square.Options(rayo.InPlacementGroup(pg, 1)).Remote(rayo.V(7)))
	fmt.Println(v, err)
	// Output: 49 <nil>
}
