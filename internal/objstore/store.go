// Package objstore is the per-node shared-memory object store.
//
// One large anonymous memory file (an Arena, a memfd) is mapped MAP_SHARED by the node's
// raylet and by every worker on the node. The raylet owns the Store: the
// object table and the allocator that hands out offsets in the arena.
// Workers write and read object bytes directly at those offsets through
// their own mapping, so an object is copied once, into shared memory, and
// never again on the node.
//
// An object is created (space reserved, unsealed), written by its creator,
// then sealed; only sealed objects are visible to Lookup. Offsets are 64-byte
// aligned and sizes are rounded up to 64 bytes. Freed space is reused best
// fit, preferring the most recently freed region among equal sizes, since its
// pages are already resident; adjacent free regions are merged.
//
// The package is Linux only.
package objstore

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rayo-dev/rayo/internal/ids"
)

// Errors returned by Arena and Store, possibly wrapped with detail; test with
// errors.Is.
var (
	// ErrFull means no free extent is large enough for the object.
	ErrFull = errors.New("objstore: object store full")
	// ErrExists means an object with that ID is already in the store.
	ErrExists = errors.New("objstore: object already exists")
	// ErrNotFound means no object with that ID is in the store.
	ErrNotFound = errors.New("objstore: object not found")
	// ErrSealed means the object is sealed, while the operation needs an
	// unsealed one.
	ErrSealed = errors.New("objstore: object already sealed")
	// ErrTooLarge means the object is larger than the whole store.
	ErrTooLarge = errors.New("objstore: object larger than store capacity")
	// ErrOutOfRange means a range lies outside the arena, or the arena is
	// closed.
	ErrOutOfRange = errors.New("objstore: range outside arena")
)

// align is the alignment of every object offset and allocation size.
const align = 64

// Store is a node's object table and allocator over one Arena. It only
// hands out offsets; object bytes are accessed through Arena.Slice. It is
// safe for concurrent use.
type Store struct {
	capacity int64 // arena capacity rounded down to align

	mu      sync.Mutex // guards everything below
	objects map[ids.ObjectID]object
	free    *freeList
	used    int64 // sum of object.alloc
	sealed  int   // number of sealed objects
}

// object is one entry of the object table.
type object struct {
	off, size int64 // the object is [off, off+size) of the arena
	alloc     int64 // size rounded up to align; 0 for empty objects
	sealed    bool
}

// Stats is a snapshot of a Store's usage.
type Stats struct {
	// Capacity is the number of bytes the store can allocate.
	Capacity int64
	// Used is the number of bytes allocated, including alignment padding.
	Used int64
	// Objects is the number of objects, sealed or not.
	Objects int
	// Sealed is the number of sealed objects.
	Sealed int
	// LargestFree is the size of the largest free extent: the largest object
	// that can be created now.
	LargestFree int64
}

// NewStore returns an empty store allocating from a. The whole arena is
// free; a is not otherwise touched.
func NewStore(a *Arena) *Store {
	c := a.Capacity() &^ (align - 1)
	return &Store{
		capacity: c,
		objects:  make(map[ids.ObjectID]object),
		free:     newFreeList(c),
	}
}

// Create reserves size bytes for a new, unsealed object and returns its
// offset in the arena. An empty object takes no space and gets offset 0.
func (s *Store) Create(id ids.ObjectID, size int64) (off int64, err error) {
	if size < 0 {
		return 0, fmt.Errorf("objstore: create %s: negative size %d", id, size)
	}
	if size > s.capacity {
		return 0, fmt.Errorf("%w: %s needs %d bytes, capacity is %d", ErrTooLarge, id, size, s.capacity)
	}
	alloc := (size + align - 1) &^ (align - 1)

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[id]; ok {
		return 0, fmt.Errorf("%w: %s", ErrExists, id)
	}
	if alloc > 0 {
		var ok bool
		if off, ok = s.free.take(alloc); !ok {
			return 0, fmt.Errorf("%w: requested %d bytes, %d of %d used, largest free extent %d",
				ErrFull, size, s.used, s.capacity, s.free.largest())
		}
	}
	s.objects[id] = object{off: off, size: size, alloc: alloc}
	s.used += alloc
	return off, nil
}

// Seal marks the object as complete, making it visible to Lookup.
func (s *Store) Seal(id ids.ObjectID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: seal %s", ErrNotFound, id)
	case o.sealed:
		return fmt.Errorf("%w: %s", ErrSealed, id)
	}
	o.sealed = true
	s.objects[id] = o
	s.sealed++
	return nil
}

// Abort removes an unsealed object and frees its space, for a creator that
// failed before sealing. It fails with ErrSealed for a sealed object.
func (s *Store) Abort(id ids.ObjectID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: abort %s", ErrNotFound, id)
	case o.sealed:
		return fmt.Errorf("%w: cannot abort %s", ErrSealed, id)
	}
	s.release(id, o)
	return nil
}

// Lookup returns the location of a sealed object; ok is false if the object
// is absent or not sealed yet.
func (s *Store) Lookup(id ids.ObjectID) (off, size int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[id]
	if !ok || !o.sealed {
		return 0, 0, false
	}
	return o.off, o.size, true
}

// Unsealed reports whether id is created and not sealed yet: its writer
// is still at it (or its seal is on its way).
func (s *Store) Unsealed(id ids.ObjectID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[id]
	return ok && !o.sealed
}

// Delete removes an object, sealed or not, and returns the number of bytes
// freed (its size rounded up to the alignment). The caller must make sure no
// one still reads the object's bytes.
func (s *Store) Delete(id ids.ObjectID) (freed int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[id]
	if !ok {
		return 0, fmt.Errorf("%w: delete %s", ErrNotFound, id)
	}
	s.release(id, o)
	return o.alloc, nil
}

// release drops o from the table and frees its space. s.mu must be held.
func (s *Store) release(id ids.ObjectID, o object) {
	delete(s.objects, id)
	if o.sealed {
		s.sealed--
	}
	if o.alloc > 0 {
		s.free.give(o.off, o.alloc)
		s.used -= o.alloc
	}
}

// Used is the number of bytes allocated, including alignment padding.
func (s *Store) Used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// Capacity is the number of bytes the store can allocate: the arena's
// capacity rounded down to a multiple of 64.
func (s *Store) Capacity() int64 { return s.capacity }

// Len is the number of objects, sealed or not.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.objects)
}

// Stats returns a snapshot of the store's usage.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Capacity:    s.capacity,
		Used:        s.used,
		Objects:     len(s.objects),
		Sealed:      s.sealed,
		LargestFree: s.free.largest(),
	}
}

// Each calls f with every object's ID, size and whether it is sealed, in
// no particular order, until f returns false. The store is locked
// meanwhile: f must not call the store.
func (s *Store) Each(f func(id ids.ObjectID, size int64, sealed bool) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.objects {
		if !f(id, o.size, o.sealed) {
			return
		}
	}
}
