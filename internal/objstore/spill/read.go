package spill

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/ids"
)

// Has reports whether the object is spilled, and its size.
func (s *Store) Has(id ids.ObjectID) (size int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.mu.objects[id]
	if !ok {
		return 0, false
	}
	return e.size, true
}

// ReadAt reads bytes [off, off+len(p)) of a spilled object into p, for
// restoring it into memory or streaming it to another node chunk by chunk.
// As io.ReaderAt, it returns n < len(p) only with an error: io.EOF when the
// object ends first. It is safe for concurrent use with Spill, Delete and
// other reads, including a Delete of the same object: a read that has begun
// reads the object's bytes, not freed space.
//
// Errors match ErrNotFound, ErrOutOfRange (off < 0 or past the end),
// ErrCorrupt (the file is shorter than its objects) or ErrClosed.
func (s *Store) ReadAt(id ids.ObjectID, p []byte, off int64) (int, error) {
	start := time.Now()
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	e, ok := s.mu.objects[id]
	if !ok {
		s.mu.Unlock()
		return 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if off < 0 || off > e.size {
		s.mu.Unlock()
		return 0, fmt.Errorf("%w: offset %d in %s of %d bytes", ErrOutOfRange, off, id, e.size)
	}
	want := min(int64(len(p)), e.size-off)
	e.readers++
	s.ops.Add(1)
	s.mu.Unlock()
	defer s.ops.Done()

	n, err := s.pread(e, p[:want], off)

	s.mu.Lock()
	e.readers--
	var act func() error
	if e.readers == 0 && e.deleted {
		act = s.release(e)
	}
	s.mu.st.RestoredBytes += int64(n)
	if err == nil && off+want == e.size {
		s.mu.st.RestoredObjects++
	}
	s.mu.st.ReadCalls++
	s.mu.st.ReadTime += time.Since(start)
	s.mu.Unlock()
	// A failure to give back the space of a deleted object is not this
	// read's failure; the space returns when the file goes.
	_ = run(act)
	if err == nil && want < int64(len(p)) {
		err = io.EOF
	}
	return n, err
}

// pread fills p from byte off of e, retrying short reads.
func (s *Store) pread(e *entry, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(e.f.fd, p[done:], e.off+off+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("spill: reading %s at %d: %w", filepath.Join(s.dir, e.f.name), e.off+off+int64(done), err)
		}
		if n == 0 {
			return done, fmt.Errorf("%w: %s ends before byte %d of object of %d bytes at %d",
				ErrCorrupt, filepath.Join(s.dir, e.f.name), off+int64(done), e.size, e.off)
		}
		done += n
	}
	return done, nil
}

// Delete drops a spilled object and gives its disk space back at once: its
// blocks are punched out of a fused file, and a file is unlinked with its
// last object. Reads of the object already in progress finish first. The
// object is gone even when giving the space back fails (the error says so;
// the space then returns when its file goes).
func (s *Store) Delete(id ids.ObjectID) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	e, ok := s.mu.objects[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	delete(s.mu.objects, id)
	s.mu.live -= e.size
	s.mu.st.DeletedObjects++
	if e.readers > 0 {
		e.deleted = true
		s.mu.Unlock()
		return nil
	}
	act := s.release(e)
	s.ops.Add(1)
	s.mu.Unlock()
	defer s.ops.Done()
	return run(act)
}

// Each calls f with every spilled object's ID and size, in no particular
// order, until f returns false. The store is locked meanwhile: f must not
// call it.
func (s *Store) Each(f func(id ids.ObjectID, size int64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.mu.objects {
		if !e.deleted && !f(id, e.size) {
			return
		}
	}
}
