package objstore

import "math/rand/v2"

// extent is one free range [off, off+size) of the arena. It is also its own
// node in the size-ordered treap of a freeList.
type extent struct {
	off, size int64
	seq       uint64 // when it was last freed; larger is more recent
	prio      uint32 // treap heap priority
	left      *extent
	right     *extent
}

// before is the treap order: smaller extents first and, among extents of
// equal size, the most recently freed first, so a best-fit search prefers
// regions whose pages are likely still resident.
func before(a, b *extent) bool {
	if a.size != b.size {
		return a.size < b.size
	}
	return a.seq > b.seq
}

// freeList holds the free extents of an arena. Extents are indexed by start
// and end offset, so freeing coalesces with both neighbours in O(1), and
// kept in a treap in before order, so best fit is O(log n) expected.
// Adjacent free extents are always merged. It is not safe for concurrent
// use.
type freeList struct {
	byOff map[int64]*extent
	byEnd map[int64]*extent
	root  *extent
	seq   uint64
}

func newFreeList(capacity int64) *freeList {
	f := &freeList{byOff: make(map[int64]*extent), byEnd: make(map[int64]*extent)}
	if capacity > 0 {
		f.add(&extent{off: 0, size: capacity})
	}
	return f
}

// take allocates n > 0 bytes from the smallest free extent that holds
// them, carving from its start. It reports false, changing nothing, if no
// extent is large enough.
func (f *freeList) take(n int64) (off int64, ok bool) {
	var e *extent
	for x := f.root; x != nil; {
		if x.size >= n {
			e, x = x, x.left
		} else {
			x = x.right
		}
	}
	if e == nil {
		return 0, false
	}
	off = e.off
	f.root = remove(f.root, e)
	delete(f.byOff, e.off)
	if e.size == n {
		delete(f.byEnd, e.off+e.size)
		return off, true
	}
	e.off += n
	e.size -= n
	f.byOff[e.off] = e // byEnd already points at e
	f.root = insert(f.root, e)
	return off, true
}

// give returns [off, off+n) to the free list, merging it with free
// neighbours.
func (f *freeList) give(off, n int64) {
	end := off + n
	var e *extent // a node to reuse, saving an allocation
	if p := f.byEnd[off]; p != nil {
		f.drop(p)
		off = p.off
		e = p
	}
	if q := f.byOff[end]; q != nil {
		f.drop(q)
		end = q.off + q.size
		e = q
	}
	if e == nil {
		e = new(extent)
	}
	f.seq++
	e.off, e.size, e.seq = off, end-off, f.seq
	f.add(e)
}

func (f *freeList) add(e *extent) {
	f.byOff[e.off] = e
	f.byEnd[e.off+e.size] = e
	f.root = insert(f.root, e)
}

func (f *freeList) drop(e *extent) {
	delete(f.byOff, e.off)
	delete(f.byEnd, e.off+e.size)
	f.root = remove(f.root, e)
}

// largest is the size of the largest free extent, 0 if none.
func (f *freeList) largest() int64 {
	x := f.root
	if x == nil {
		return 0
	}
	for x.right != nil {
		x = x.right
	}
	return x.size
}

// len is the number of free extents.
func (f *freeList) len() int { return len(f.byOff) }

// insert adds the detached node e to the treap t and returns the new root.
func insert(t, e *extent) *extent {
	e.left, e.right, e.prio = nil, nil, rand.Uint32()
	l, r := split(t, e)
	return merge(merge(l, e), r)
}

// remove takes node e, which must be in t, out of the treap and returns
// the new root.
func remove(t, e *extent) *extent {
	if t == e {
		m := merge(e.left, e.right)
		e.left, e.right = nil, nil
		return m
	}
	if before(e, t) {
		t.left = remove(t.left, e)
	} else {
		t.right = remove(t.right, e)
	}
	return t
}

// split divides t into the nodes before e and the rest.
func split(t, e *extent) (l, r *extent) {
	if t == nil {
		return nil, nil
	}
	if before(t, e) {
		t.right, r = split(t.right, e)
		return t, r
	}
	l, t.left = split(t.left, e)
	return l, t
}

// merge joins treaps l and r, every node of l being before every node of r.
func merge(l, r *extent) *extent {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l.right = merge(l.right, r)
		return l
	default:
		r.left = merge(l, r.left)
		return r
	}
}
