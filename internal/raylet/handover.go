package raylet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// A drained node hands its objects over before it exits.
//
// The owners of the primary copies a node holds (those put or returned
// there, in memory or spilled) are recorded as the copies are created
// (CreateObject's owner). Once a draining node's work has ended, it asks
// another live node that is not draining to take each copy
// (MTakeObject): that node pulls it, as for a reader, and keeps it as a
// primary copy of its own (spillable, never evicted), with its owner.
// Then the draining node tells each owner where its objects went
// (MObjectsMoved): the owner's location table points to the new node, so
// reads find the object there with no rebuild. Copies the owner no longer
// holds are freed on the new node. All of it is bounded by the drain's
// deadline; what could not be moved in time is logged and said in the
// node's drain note (its death reason, which `rayo drain` prints).

// handOverParallel is how many objects a draining node hands over at
// once: the pulls of one source share its pooled connection's chunks in
// flight, so a few at once keep it busy.
const handOverParallel = 4

// maxNoted bounds the objects a drain note names.
const maxNoted = 5

// objOwner is who owns a primary copy held here, as its creator said.
type objOwner struct {
	addr string // the owner's endpoint
	job  string // the job of the process that created it: its credential reaches the owner
}

// ownerTable records the owners of this node's primary copies.
type ownerTable struct {
	mu sync.Mutex // protects m
	m  map[ids.ObjectID]objOwner
}

func (t *ownerTable) set(id ids.ObjectID, o objOwner) {
	if o.addr == "" {
		return
	}
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[ids.ObjectID]objOwner)
	}
	t.m[id] = o
	t.mu.Unlock()
}

func (t *ownerTable) drop(list []ids.ObjectID) {
	t.mu.Lock()
	for _, id := range list {
		delete(t.m, id)
	}
	t.mu.Unlock()
}

func (t *ownerTable) get(id ids.ObjectID) (objOwner, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.m[id]
	return o, ok
}

// connJob is the job of the process on c ("" for the node's own, or this
// process).
func connJob(c *rpc.Conn) string {
	if c == nil {
		return ""
	}
	switch v := c.Value.(type) {
	case *workerProc:
		return v.job
	case *job:
		return v.id
	}
	return ""
}

// heldPrimaries lists the primary copies this node holds, in memory or
// spilled, with their sizes.
func (s *spiller) heldPrimaries() map[ids.ObjectID]int64 {
	out := make(map[ids.ObjectID]int64)
	s.mu.Lock()
	for id := range s.elems {
		if _, size, ok := s.r.store.Lookup(id); ok {
			out[id] = size
		}
	}
	for id, freed := range s.spilling {
		if _, size, ok := s.r.store.Lookup(id); ok && !freed {
			out[id] = size
		}
	}
	s.mu.Unlock()
	if s.disk != nil {
		s.disk.Each(func(id ids.ObjectID, size int64) bool {
			out[id] = size
			return true
		})
	}
	return out
}

// serveTake answers an MTakeObject: another node, being drained, hands
// over a primary copy. This node pulls it and keeps it as a primary copy
// of its own, with its owner.
func (r *Raylet) serveTake(ctx context.Context, req *pb.PullObject, reply func(*pb.CreateObjectReply, error)) {
	oid, err := ids.ObjectIDFrom(req.ObjectId)
	if err != nil {
		reply(nil, fmt.Errorf("raylet: take object: %w", err))
		return
	}
	if req.From == "" || req.Size < 0 {
		reply(nil, fmt.Errorf("raylet: take object %s: no source, or a negative size (%d)", oid, req.Size))
		return
	}
	r.mu.Lock()
	err = r.fencedLocked()
	if err == nil && r.draining {
		err = errors.New("raylet: take object: this node is draining too")
	}
	r.mu.Unlock()
	if err != nil {
		reply(nil, err)
		return
	}
	if !r.offLoop(rpc.ConnOf(ctx), func(ctx context.Context) {
		reply(objectReply(r.take(ctx, oid, req.From, req.Size, objOwner{addr: req.OwnerAddr, job: req.OwnerJob})))
	}) {
		reply(nil, ErrClosed)
	}
}

// take pulls id from the raylet at from and makes the copy a primary one
// of this node's. A pulled copy evicted before it was kept is pulled
// again.
func (r *Raylet) take(ctx context.Context, id ids.ObjectID, from string, size int64, owner objOwner) (int64, error) {
	for {
		off, err := r.Pull(ctx, id, from, size)
		if err != nil {
			return 0, err
		}
		if r.xfer.Keep(id) {
			r.owners.set(id, owner)
			r.spill.sealed([]ids.ObjectID{id}) // a primary now: it may spill
			return off, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("raylet: take %s: %w", id, context.Cause(ctx))
		}
	}
}

// DrainNote is what the drain of this node said of its objects, once it
// has handed them over ("" before, or when it held none).
func (r *Raylet) DrainNote() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain.note
}

// handOverResult is what a hand-over did.
type handOverResult struct {
	moved      int
	movedBytes int64
	local      int                     // owned by processes of this node: they go with it
	failed     map[ids.ObjectID]string // not moved, and why
	done       map[ids.ObjectID]bool   // moved, or no longer held by their owner: not to move again
}

// add counts what a later pass did after this one: the objects it did
// not move are what is left.
func (h handOverResult) add(later handOverResult) handOverResult {
	later.moved += h.moved
	later.movedBytes += h.movedBytes
	for id := range h.done {
		later.done[id] = true
	}
	return later
}

// note says what became of the objects, for the drain's report.
func (h handOverResult) note() string {
	if h.moved == 0 && len(h.failed) == 0 {
		return ""
	}
	var parts []string
	if h.moved > 0 {
		parts = append(parts, fmt.Sprintf("%d object(s) (%s) moved to other nodes", h.moved, mib(h.movedBytes)))
	}
	if len(h.failed) == 0 {
		return strings.Join(parts, "")
	}
	list := make([]string, 0, len(h.failed))
	for id, why := range h.failed {
		list = append(list, id.String()+": "+why)
	}
	sort.Strings(list)
	more := ""
	if len(list) > maxNoted {
		more = fmt.Sprintf("; and %d more (see the node's log)", len(list)-maxNoted)
		list = list[:maxNoted]
	}
	parts = append(parts, fmt.Sprintf("%d object(s) could not be moved and are lost with the node (rebuilt from lineage when they can be): %s%s",
		len(h.failed), strings.Join(list, "; "), more))
	return strings.Join(parts, "; ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// handOverItem is a primary copy a hand-over moves, with its size and
// owner.
type handOverItem struct {
	id    ids.ObjectID
	size  int64
	owner objOwner
}

// ownerTarget is an owner and the node that took some of its objects:
// the owner is told of them in one call.
type ownerTarget struct {
	owner  objOwner
	target string
}

// handOver moves the primary copies this node holds, but those in skip,
// to the other live nodes that are not draining and tells their owners,
// until deadline.
func (r *Raylet) handOver(deadline time.Time, skip map[ids.ObjectID]bool) handOverResult {
	ctx, cancel := context.WithDeadline(r.ctx, deadline)
	defer cancel()
	res := handOverResult{failed: make(map[ids.ObjectID]string), done: make(map[ids.ObjectID]bool)}
	todo, targets := r.handOverPlan(skip, &res)
	if len(todo) == 0 {
		return res
	}
	if len(targets) == 0 {
		for _, it := range todo {
			res.failed[it.id] = "no other live node that is not draining"
		}
		return res
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].size > todo[j].size }) // the largest first, spread out
	r.log.Info("draining: handing over the objects held here", "objects", len(todo), "nodes", len(targets), "deadline", deadline)

	conns := newTargetConns(r)
	defer conns.close()
	byOwner := r.handOverAll(ctx, conns, todo, targets, &res)
	r.tellOwners(ctx, byOwner, todo, &res)
	return res
}

// handOverPlan lists the primary copies held here, but those in skip,
// that a hand-over is to move, and the nodes it may move them to. The
// copies it cannot or need not move are counted in res: those whose owner
// is unknown as failed, those whose owner goes with this node as local.
func (r *Raylet) handOverPlan(skip map[ids.ObjectID]bool, res *handOverResult) (todo []handOverItem, targets []string) {
	held := r.spill.heldPrimaries()
	for id := range skip {
		delete(held, id)
	}
	r.mu.Lock()
	targets = make([]string, 0, len(r.peers))
	for _, p := range r.peers {
		targets = append(targets, p.addr)
	}
	r.mu.Unlock()

	for id, size := range held {
		o, ok := r.owners.get(id)
		switch {
		case !ok:
			res.failed[id] = "its owner is not known here"
		case ownerNode(o.addr) == r.cfg.NodeName:
			res.local++ // its owner goes with the node: nobody could read it
		default:
			todo = append(todo, handOverItem{id, size, o})
		}
	}
	return todo, targets
}

// handOverAll hands each object of todo over to one of targets, a few at
// once, and returns those moved grouped by owner and the node that took
// them. Those that could not be moved are recorded failed in res.
func (r *Raylet) handOverAll(ctx context.Context, conns *targetConns, todo []handOverItem, targets []string, res *handOverResult) map[ownerTarget][]ids.ObjectID {
	var mu sync.Mutex // protects res and byOwner
	byOwner := make(map[ownerTarget][]ids.ObjectID)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(handOverParallel, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				it := todo[i]
				target, err := r.handOne(ctx, conns, targets, i, it.id, it.size, it.owner)
				mu.Lock()
				if err != nil {
					res.failed[it.id] = err.Error()
				} else {
					k := ownerTarget{it.owner, target}
					byOwner[k] = append(byOwner[k], it.id)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range todo {
		work <- i
	}
	close(work)
	wg.Wait()
	return byOwner
}

// tellOwners tells the owners where their objects went, one call per
// owner and node, and records the outcome in res: done when the owner
// was told, and moved too unless it no longer holds them; failed when it
// could not be told, in which case the copies taken are freed.
func (r *Raylet) tellOwners(ctx context.Context, byOwner map[ownerTarget][]ids.ObjectID, todo []handOverItem, res *handOverResult) {
	sizes := make(map[ids.ObjectID]int64, len(todo))
	for _, it := range todo {
		sizes[it.id] = it.size
	}
	var mu sync.Mutex // protects res
	var wg sync.WaitGroup
	for k, list := range byOwner {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gone, err := r.tellOwner(ctx, k.owner, k.target, list)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				// Nobody can find the copies taken (readers ask the
				// owner): they go. The owner, if it lives, still points
				// here and rebuilds what it can.
				r.freeAt(ctx, k.target, list)
				for _, id := range list {
					res.failed[id] = "its owner could not be told where it went (it may be gone): " + err.Error()
				}
				return
			}
			for _, id := range list {
				res.done[id] = true
				if !gone[id] {
					res.moved++
					res.movedBytes += sizes[id]
				}
			}
		}()
	}
	wg.Wait()
}

// handOne hands object id over to one of targets (the i-th in turn, then
// the others if it cannot take it) and returns which took it.
func (r *Raylet) handOne(ctx context.Context, conns *targetConns, targets []string, i int, id ids.ObjectID, size int64, owner objOwner) (string, error) {
	var errs []string
	for k := range targets {
		target := targets[(i+k)%len(targets)]
		c, err := conns.get(ctx, target)
		if err == nil {
			rep := &pb.CreateObjectReply{}
			err = c.Call(ctx, rpc.MTakeObject, &pb.PullObject{ObjectId: id[:], From: r.TCPAddr(), Size: size, OwnerAddr: owner.addr, OwnerJob: owner.job}, rep)
			if err == nil && rep.Error != "" {
				err = errors.New(rep.Error)
			}
		}
		if err == nil {
			return target, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("the drain's deadline passed before it was moved (%s)", mib(size))
		}
		errs = append(errs, target+": "+err.Error())
	}
	return "", fmt.Errorf("no node took it: %s", strings.Join(errs, "; "))
}

// tellOwner tells owner that its objects list moved to target, and
// returns those it no longer holds, which are freed there.
func (r *Raylet) tellOwner(ctx context.Context, owner objOwner, target string, list []ids.ObjectID) (map[ids.ObjectID]bool, error) {
	c, err := rpc.DialEndpoint(ctx, owner.addr, r.cfg.NodeName, r.jobToken(owner.job), nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", owner.addr, err)
	}
	defer c.Close()
	rep := &pb.ObjectIDs{}
	if err := c.Call(ctx, rpc.MObjectsMoved, &pb.ObjectsMoved{Ids: idBytes(list), From: r.TCPAddr(), To: target}, rep); err != nil {
		return nil, fmt.Errorf("owner %s: %w", owner.addr, err)
	}
	gone := make(map[ids.ObjectID]bool)
	for _, id := range objectIDs(rep) {
		gone[id] = true
	}
	if len(gone) > 0 {
		free := make([]ids.ObjectID, 0, len(gone))
		for id := range gone {
			free = append(free, id)
		}
		r.freeAt(ctx, target, free)
	}
	return gone, nil
}

// freeAt frees objects list on the node at target, which took them.
func (r *Raylet) freeAt(ctx context.Context, target string, list []ids.ObjectID) {
	if tc, err := rpc.DialToken(ctx, "tcp:"+target, r.cfg.Token, nil); err == nil {
		_ = tc.Notify(rpc.MFreeObjects, &pb.ObjectIDs{Ids: idBytes(list)})
		_ = tc.Close()
	}
}

// ownerNode is the node an endpoint names ("" for a bare Unix socket).
func ownerNode(ep string) string {
	_, _, node := rpc.SplitEndpoint(ep)
	return node
}

func idBytes(list []ids.ObjectID) [][]byte {
	out := make([][]byte, len(list))
	for i := range list {
		out[i] = list[i][:]
	}
	return out
}

// targetConns are a hand-over's connections to the nodes it moves objects
// to, one each, dialed on first use.
type targetConns struct {
	r  *Raylet
	mu sync.Mutex // protects m
	m  map[string]*targetConn
}

type targetConn struct {
	once sync.Once
	c    *rpc.Conn
	err  error
}

func newTargetConns(r *Raylet) *targetConns {
	return &targetConns{r: r, m: make(map[string]*targetConn)}
}

func (t *targetConns) get(ctx context.Context, addr string) (*rpc.Conn, error) {
	t.mu.Lock()
	tc := t.m[addr]
	if tc == nil {
		tc = &targetConn{}
		t.m[addr] = tc
	}
	t.mu.Unlock()
	tc.once.Do(func() {
		tc.c, tc.err = rpc.DialToken(ctx, "tcp:"+addr, t.r.cfg.Token, nil)
	})
	return tc.c, tc.err
}

func (t *targetConns) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tc := range t.m {
		if tc.c != nil {
			_ = tc.c.Close()
		}
	}
}
