package rayo

import (
	"context"
	"fmt"
	"testing"
)

// vecBox carries a ref out of the task that made it.
type vecBox struct{ Ref Ref[[]float64] }

// ownVec puts a vector from inside a task: the worker owns it.
var ownVec = Func1(func(n int) vecBox { return vecBox{Put(context.Background(), make([]float64, n))} })

func TestStateAPIObjectsOwnedByWorkers(t *testing.T) {
	ctx := ctxT(t)
	b, err := Get(ctx, ownVec.Remote(V(1<<16)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Ref.Release()
	if v, err := Get(ctx, b.Ref); err != nil || len(v) != 1<<16 {
		t.Fatalf("the worker's object: %d floats, %v", len(v), err)
	}
	var objs apiList
	apiGet(t, "/api/v0/objects?limit=10000&filter=object_id="+b.Ref.ID(), &objs)
	if len(objs.Result) != 1 {
		t.Fatalf("the object a worker owns is not listed once: %v (warnings %v)", objs.Result, objs.Warnings)
	}
	o := objs.Result[0]
	if n, _ := o["reference_count"].(float64); n < 1 || o["owner_address"] == "" || fmt.Sprint(o["locations"]) != "["+NodeID()+"]" {
		t.Fatalf("the object a worker owns, which the driver borrows: %v", o)
	}
}
