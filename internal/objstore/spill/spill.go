package spill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/ids"
)

// Object is an object to spill. Data is only read, and only until Spill
// returns: it may be a view of the shared-memory arena.
type Object struct {
	ID   ids.ObjectID
	Data []byte
}

// Limits of one pwritev: bytes (also how often a writer checks for
// cancellation) and iovecs (the kernel's IOV_MAX).
const (
	maxWriteBytes = 16 << 20
	maxIovecs     = 1024
)

// job is the part of one Spill call that goes to one file: a writer's unit
// of work.
type job struct {
	ctx   context.Context
	f     *file
	items []placed // in increasing offsets
	err   error    // set by the writer before done
	done  func()
}

// placed is an object given its place in a file.
type placed struct {
	id   ids.ObjectID
	f    *file
	off  int64
	data []byte
}

// Spill writes objs to disk, fusing small ones into shared files, with the
// writers working on several files in parallel, and returns once every byte
// is written (not necessarily fsynced). The objects become visible to Has
// and ReadAt together, when Spill succeeds.
//
// It fails without writing anything with an error matching ErrDiskFull (a
// *DiskFullError naming the folder and its usage) when the file system would
// pass Config.Threshold, and with ErrExists when an object is already
// spilled, being spilled, or given twice. When ctx is cancelled, when Close
// begins or when a write fails, what was written for this call is discarded
// and its disk space given back.
func (s *Store) Spill(ctx context.Context, objs []Object) error {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	size, avail, uerr := s.cfg.Usage(s.dir)

	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if len(objs) == 0 {
		s.mu.Unlock()
		return nil
	}
	if err := s.checkNew(objs); err != nil {
		s.mu.Unlock()
		return err
	}
	var need int64
	for _, o := range objs {
		need += s.alignUp(int64(len(o.Data)))
	}
	if uerr != nil {
		s.mu.Unlock()
		return fmt.Errorf("spill: usage of %s: %w", s.dir, uerr)
	}
	if used := size - avail + s.mu.inflight; float64(used+need) > s.cfg.Threshold*float64(size) {
		s.mu.Unlock()
		return &DiskFullError{Dir: s.dir, Used: used, Size: size, Need: need, Threshold: s.cfg.Threshold}
	}
	items, acts, err := s.place(objs)
	if err != nil {
		acts = append(acts, s.discard(items)...)
		s.mu.Unlock()
		return errors.Join(err, run(acts...))
	}
	for _, o := range objs {
		s.mu.pending[o.ID] = struct{}{}
	}
	s.mu.inflight += need
	s.ops.Add(1)
	s.mu.Unlock()
	defer s.ops.Done()
	if err := run(acts...); err != nil {
		return s.finish(start, objs, need, items, err)
	}
	return s.finish(start, objs, need, items, s.write(ctx, items))
}

// finish ends a Spill call whose items were written (err == nil) or not.
func (s *Store) finish(start time.Time, objs []Object, need int64, items []placed, err error) error {
	s.mu.Lock()
	for _, o := range objs {
		delete(s.mu.pending, o.ID)
	}
	s.mu.inflight -= need
	var acts []func() error
	if err != nil {
		acts = s.discard(items)
		s.mu.st.FailedSpills++
	} else {
		for _, it := range items {
			s.mu.objects[it.id] = &entry{f: it.f, off: it.off, size: int64(len(it.data))}
			s.mu.st.SpilledBytes += int64(len(it.data))
			s.mu.live += int64(len(it.data))
		}
		s.mu.st.SpilledObjects += int64(len(items))
		s.mu.st.SpillCalls++
		s.mu.st.SpillTime += time.Since(start)
	}
	s.mu.Unlock()
	return errors.Join(err, run(acts...))
}

// checkNew refuses objects already spilled, being spilled, or given twice.
// s.mu is held.
func (s *Store) checkNew(objs []Object) error {
	seen := make(map[ids.ObjectID]struct{}, len(objs))
	for _, o := range objs {
		if _, ok := seen[o.ID]; ok {
			return fmt.Errorf("%w: %s is given twice", ErrExists, o.ID)
		}
		seen[o.ID] = struct{}{}
		if _, ok := s.mu.objects[o.ID]; ok {
			return fmt.Errorf("%w: %s", ErrExists, o.ID)
		}
		if _, ok := s.mu.pending[o.ID]; ok {
			return fmt.Errorf("%w: %s is being spilled", ErrExists, o.ID)
		}
	}
	return nil
}

// place gives each object its file and offset, creating files as needed;
// each placed object holds a reference to its file. s.mu is held. It returns
// what it placed (for discard, on error) and actions to run after unlock.
func (s *Store) place(objs []Object) ([]placed, []func() error, error) {
	items := make([]placed, 0, len(objs))
	var acts []func() error
	for _, o := range objs {
		n := int64(len(o.Data))
		var f *file
		var off int64
		if n >= s.cfg.FileSize {
			nf, err := s.newFile()
			if err != nil {
				return items, acts, err
			}
			f = nf
		} else {
			if t := s.mu.tail; t == nil || t.end+n > s.cfg.FileSize {
				nf, err := s.newFile()
				if err != nil {
					return items, acts, err
				}
				nf.refs = 1 // the tail's reference
				s.mu.tail = nf
				if t != nil {
					acts = append(acts, s.unref(t)) // t is no longer the tail
				}
			}
			f, off = s.mu.tail, s.mu.tail.end
			f.end += s.alignUp(n)
		}
		f.refs++
		items = append(items, placed{id: o.ID, f: f, off: off, data: o.Data})
	}
	return items, acts, nil
}

// discard drops the objects of a failed Spill call: their files' references
// and the bytes they may have written. s.mu is held; the returned actions
// run after unlock.
func (s *Store) discard(items []placed) []func() error {
	acts := make([]func() error, 0, len(items))
	for _, it := range items {
		acts = append(acts, s.release(&entry{f: it.f, off: it.off, size: int64(len(it.data))}))
	}
	return acts
}

// write hands the items to the writers, one job per file, and waits for
// every job it handed out to finish, so that no writer touches the callers'
// slices after Spill returns.
func (s *Store) write(ctx context.Context, items []placed) error {
	var jobs []*job
	byFile := make(map[*file]*job)
	for _, it := range items {
		j := byFile[it.f]
		if j == nil {
			j = &job{ctx: ctx, f: it.f}
			byFile[it.f] = j
			jobs = append(jobs, j)
		}
		j.items = append(j.items, it)
	}
	done := make(chan struct{}, len(jobs))
	var err error
	sent := 0
send:
	for _, j := range jobs {
		j.done = func() { done <- struct{}{} }
		select {
		case s.jobs <- j:
			sent++
		case <-ctx.Done():
			err = fmt.Errorf("spill: %w", ctx.Err())
			break send
		case <-s.closing:
			err = fmt.Errorf("spill: %w", ErrClosed)
			break send
		}
	}
	for range sent {
		<-done
	}
	for _, j := range jobs[:sent] {
		if j.err != nil {
			err = errors.Join(err, j.err)
			break
		}
	}
	return err
}

// writer runs jobs until Close.
func (s *Store) writer() {
	defer s.writers.Done()
	for j := range s.jobs {
		j.err = s.writeJob(j)
		j.done()
	}
}

// stopped says why a job must stop, or nil.
func (s *Store) stopped(j *job) error {
	if err := j.ctx.Err(); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	select {
	case <-s.closing:
		return fmt.Errorf("spill: %w", ErrClosed)
	default:
		return nil
	}
}

// writeJob writes a job's objects with few large pwritev calls, straight
// from their slices, padding the gaps between them with zeros.
func (s *Store) writeJob(j *job) error {
	var (
		iov   [][]byte
		start int64 // file offset of iov
		bytes int64 // bytes in iov
	)
	flush := func() error {
		if len(iov) == 0 {
			return nil
		}
		if err := s.stopped(j); err != nil {
			return err
		}
		err := s.pwritev(j.f, iov, start)
		start += bytes
		iov, bytes = iov[:0], 0
		return err
	}
	for _, it := range j.items {
		if len(it.data) == 0 {
			continue
		}
		if gap := it.off - (start + bytes); gap != 0 {
			if len(iov) > 0 && gap > 0 && gap < s.align {
				iov = append(iov, s.zeros[:gap])
				bytes += gap
			} else {
				if err := flush(); err != nil {
					return err
				}
				start = it.off
			}
		}
		for d := it.data; len(d) > 0; {
			n := min(int64(len(d)), maxWriteBytes-bytes)
			iov = append(iov, d[:n])
			bytes += n
			d = d[n:]
			if bytes >= maxWriteBytes || len(iov) >= maxIovecs-1 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// pwritev writes all of iov at off in f, retrying short writes.
func (s *Store) pwritev(f *file, iov [][]byte, off int64) error {
	for len(iov) > 0 {
		n, err := unix.Pwritev(f.fd, iov, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			path := filepath.Join(s.dir, f.name)
			if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
				return fmt.Errorf("%w: writing %s: %w", ErrDiskFull, path, err)
			}
			return fmt.Errorf("spill: writing %s at %d: %w", path, off, err)
		}
		off += int64(n)
		for n > 0 {
			if n < len(iov[0]) {
				iov[0] = iov[0][n:]
				break
			}
			n -= len(iov[0])
			iov = iov[1:]
		}
		for len(iov) > 0 && len(iov[0]) == 0 {
			iov = iov[1:]
		}
	}
	return nil
}
