package core

import (
	"context"
	"fmt"

	"github.com/rayo-dev/rayo/internal/rpc"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"google.golang.org/protobuf/proto"
)

// Lineage: an owner keeps the spec of each finished task whose results went
// to a node's store, so that a result lost with its node (the only copy)
// can be made again by running the task once more.

// lineage is how to make an object again.
type lineage struct {
	spec *pb.TaskSpec
	q    *schedQueue
	args []*pb.ObjectRef // the task's ref arguments, pinned while this lives
	// retries is how many more times the task may run: what its
	// MaxRetries left when it finished (negative: no bound). As in Ray, a
	// rebuild spends a retry, so a task with MaxRetries(0) is never run
	// again and its lost results stay lost.
	retries int
}

// maxRebuilds bounds how often a reader tries to have one lost object
// made again before it gives up.
const maxRebuilds = 3

// keepLineageLocked records, for a task that finished well, how to make
// its stored results again.
// The task's ref arguments are pinned as long as the lineage is kept, so
// that running it again finds them (lineage pinning). The caller holds
// tasks.mu and objs.mu.
func (ot *objectTable) keepLineageLocked(t *task, obj *object, loc *pb.Locator) {
	if loc.InStore && t.actor != nil {
		obj.madeBy = t.spec.Name // an actor's result: no lineage, and the error says why
	}
	if loc.InStore && loc.NodeAddr != "" && t.q != nil && t.actor == nil && t.create == nil && obj.lineage == nil {
		l := &lineage{spec: t.spec, q: t.q, retries: t.retries}
		for _, a := range t.spec.Args {
			if a.Ref != nil {
				ot.pinLocked(a.Ref, false)
				l.args = append(l.args, a.Ref)
			}
		}
		obj.lineage = l
	}
}

// dropLineageLocked forgets how to make obj again, unpinning its task's
// arguments. The caller holds objs.mu.
func (ot *objectTable) dropLineageLocked(obj *object, after *actions) {
	if obj.lineage == nil {
		return
	}
	for _, ref := range obj.lineage.args {
		ot.unpinLocked(ref, after)
	}
	obj.lineage = nil
}

// rebuild runs again the task that made object id, which this process
// owns, and waits for the new copy.
func (rt *Runtime) rebuild(ctx context.Context, id ids.ObjectID, lost *pb.Locator) (*pb.Locator, error) {
	var after actions
	rt.lockTasks()
	obj := rt.objs.byID[id]
	if obj != nil && obj.owned && obj.state != statePending && obj.loc != lost {
		// Its copy is no longer the lost one: made again already, or
		// moved by a drain of its node (ObjectsMoved).
		loc := obj.loc
		rt.unlockTasks()
		return loc, nil
	}
	if obj == nil || !obj.owned || obj.lineage == nil {
		why := noLineageReason(id, obj)
		rt.unlockTasks()
		return nil, fmt.Errorf("%w: %s (its copy was on node %s) cannot be rebuilt: %s", ErrObjectLost, id, lost.GetNodeAddr(), why)
	}
	if obj.state != statePending && obj.loc == lost {
		l := obj.lineage
		if l.retries == 0 {
			rt.unlockTasks()
			return nil, fmt.Errorf("%w: %s (its copy was on node %s), and task %s that made it has no retries left to make it again (MaxRetries; rebuilt %d times)", ErrObjectLost, id, lost.GetNodeAddr(), l.spec.Name, obj.rebuilds)
		}
		if l.retries > 0 {
			l.retries--
		}
		// The first to notice starts the task again; others wait with it.
		obj.rebuilds++
		spec := proto.Clone(l.spec).(*pb.TaskSpec)
		spec.Attempt++
		tid, _ := ids.TaskIDFrom(spec.TaskId)
		t := &task{spec: spec, q: l.q, retries: l.retries}
		t.returns = make([]ids.ObjectID, spec.NumReturns)
		for i := range t.returns {
			rid := ids.ForReturn(tid, i)
			t.returns[i] = rid
			if o := rt.objs.byID[rid]; o != nil && o.state != statePending {
				o.state, o.loc, o.task, o.done = statePending, nil, t, nil
			}
		}
		rt.tasks.byID[tid] = t
		rt.tasks.enqueueLocked(t, &after)
	}
	if obj.done == nil && obj.state == statePending {
		obj.done = make(chan struct{})
	}
	done := obj.done
	rt.unlockTasks()
	after.run(rt)
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	rt.objs.mu.Lock()
	defer rt.objs.mu.Unlock()
	if obj = rt.objs.byID[id]; obj == nil {
		return nil, fmt.Errorf("%w: %s", ErrObjectFreed, id)
	}
	return obj.loc, nil
}

// noLineageReason says why object id, which has no lineage, cannot be made
// again. The caller holds objs.mu.
func noLineageReason(id ids.ObjectID, obj *object) string {
	switch {
	case obj == nil:
		return "it was freed"
	case !obj.owned:
		return "this process does not own it"
	case id.Index() == 0:
		return "made by Put: no lineage (only a task's results can be run again)"
	case obj.madeBy != "":
		return "returned by actor method " + obj.madeBy + ": actor results are not rebuilt"
	}
	return "its lineage is gone (its task is no longer known)"
}

// askRebuild asks the owner of a borrowed object, whose copy at lost could
// not be pulled, to make it again, and returns where the new copy is.
func (rt *Runtime) askRebuild(ctx context.Context, id ids.ObjectID, owner string, lost *pb.Locator) (*pb.Locator, error) {
	c, err := rt.peers.peer(ctx, owner)
	if err != nil {
		return nil, fmt.Errorf("%w: %s, and its owner %s cannot be reached to make it again: %w", ErrObjectLost, id, owner, err)
	}
	loc := &pb.Locator{}
	if err := c.Call(ctx, rpc.MGetObject, &pb.GetObject{ObjectId: id[:], LostAt: lost.NodeAddr}, loc); err != nil {
		return nil, fmt.Errorf("%w: %s: its owner %s: %w", ErrObjectLost, id, owner, err)
	}
	rt.objs.mu.Lock()
	if obj := rt.objs.byID[id]; obj != nil && !obj.owned && obj.loc == lost {
		obj.loc = loc // later reads go to the new copy at once
	}
	rt.objs.mu.Unlock()
	return loc, nil
}

// serveLost answers a borrower that could not pull object id from the node
// at lostAt: the object is made again if its copy there was the one this
// owner knew, and the reply is the copy that is current once it is ready.
func (rt *Runtime) serveLost(id ids.ObjectID, lostAt string, reply func(*pb.Locator, error)) {
	rt.objs.mu.Lock()
	obj := rt.objs.byID[id]
	var lost *pb.Locator
	if obj != nil && obj.loc != nil && obj.loc.InStore && obj.loc.NodeAddr == lostAt {
		lost = obj.loc
	}
	rt.objs.mu.Unlock()
	ok := rt.goroutine("rebuild for borrower", func() {
		loc, err := rt.rebuild(context.Background(), id, lost)
		if err != nil {
			loc = &pb.Locator{Error: sysErr("", KindObjectLost, err.Error())}
		}
		reply(loc, nil)
	})
	if !ok {
		reply(&pb.Locator{Error: sysErr("", KindSystem, ErrShutdown.Error())}, nil)
	}
}
