package spill

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/ids"
)

// Defaults of the Config fields left zero.
const (
	DefaultWriters   = 4
	DefaultFileSize  = 64 << 20
	DefaultThreshold = 0.95
)

// filePrefix starts the name of every file a Store makes; Open removes
// leftovers with this prefix.
const filePrefix = "rayo-spill-"

// Config sets up a Store. Only Dir is required.
type Config struct {
	// Dir is the spill folder. It is created 0700 when missing, and must
	// otherwise be a directory owned by us, not a symlink, not writable by
	// group or others.
	Dir string
	// Writers is the number of background writers working in parallel,
	// each on its own file (default 4).
	Writers int
	// FileSize is the size up to which small objects are fused into one
	// file (default 64 MiB); objects at least this large get their own file.
	FileSize int64
	// Threshold is the fraction of the file system holding Dir past which
	// Spill refuses with ErrDiskFull (default 0.95; at most 1).
	Threshold float64
	// Usage reports the size of the file system holding dir and the bytes
	// available on it to us. Nil means statfs(2); tests set it to fake a
	// nearly full disk.
	Usage func(dir string) (size, avail int64, err error)
}

// A Store is a spill engine over one folder. It is safe for concurrent use.
type Store struct {
	cfg   Config
	dir   string // absolute path of the folder
	dirfd int    // the folder, open and flocked until Close
	align int64  // objects start at multiples of this (the file system's block size)
	zeros []byte // align zero bytes: padding between objects in one pwritev

	jobs    chan *job      // to the writers; closed by Close
	writers sync.WaitGroup // the writer goroutines
	ops     sync.WaitGroup // Spill, ReadAt and Delete calls in progress
	closing chan struct{}  // closed when Close begins: stops Spill calls

	mu struct {
		sync.Mutex
		closed   bool
		objects  map[ids.ObjectID]*entry   // spilled objects (committed)
		pending  map[ids.ObjectID]struct{} // objects of Spill calls in progress
		files    map[*file]struct{}        // every file made and not yet removed
		tail     *file                     // the fused file being filled, or nil
		seq      uint64                    // numbers file names
		inflight int64                     // bytes placed by Spill calls in progress
		live     int64                     // sizes of objects summed
		st       Stats                     // counters (the gauges are computed)
	}
}

// file is one spill file. Its fields other than name and fd are guarded by
// Store.mu.
type file struct {
	name string
	fd   int   // open O_RDWR until refs drops to 0
	end  int64 // where the next fused object goes
	// refs counts what keeps the file: each object placed in it (spilled,
	// being spilled, or deleted while read), and 1 while it is the tail. At
	// 0 it is unlinked and closed. Whoever uses fd outside the lock holds
	// one of those references.
	refs int
}

// entry is a spilled object. Its fields are guarded by Store.mu.
type entry struct {
	f       *file
	off     int64 // in f, a multiple of Store.align
	size    int64
	readers int  // ReadAt calls in progress
	deleted bool // Delete came while readers > 0: the last reader releases it
}

// Open starts a spill engine over cfg.Dir, creating the folder if needed and
// removing spill files left there by an engine that is gone.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is empty", ErrConfig)
	}
	if cfg.Writers < 0 {
		return nil, fmt.Errorf("%w: Writers is %d, want at least 1 (0 for the default)", ErrConfig, cfg.Writers)
	}
	if cfg.FileSize < 0 {
		return nil, fmt.Errorf("%w: FileSize is %d, want at least 1 (0 for the default)", ErrConfig, cfg.FileSize)
	}
	if math.IsNaN(cfg.Threshold) || cfg.Threshold < 0 || cfg.Threshold > 1 {
		return nil, fmt.Errorf("%w: Threshold is %v, want a fraction in (0, 1] (0 for the default)", ErrConfig, cfg.Threshold)
	}
	if cfg.Writers == 0 {
		cfg.Writers = DefaultWriters
	}
	if cfg.FileSize == 0 {
		cfg.FileSize = DefaultFileSize
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Usage == nil {
		cfg.Usage = statfsUsage
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("spill: folder %q: %w", cfg.Dir, err)
	}
	fi, err := safeDir(dir)
	if err != nil {
		return nil, err
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: opening %s: %w", ErrUnsafeDir, dir, err)
	}
	s := &Store{cfg: cfg, dir: dir, dirfd: dirfd}
	if err := s.claim(fi); err != nil {
		_ = unix.Close(dirfd)
		return nil, err
	}
	s.zeros = make([]byte, s.align)
	s.jobs = make(chan *job)
	s.closing = make(chan struct{})
	s.mu.objects = make(map[ids.ObjectID]*entry)
	s.mu.pending = make(map[ids.ObjectID]struct{})
	s.mu.files = make(map[*file]struct{})
	s.writers.Add(cfg.Writers)
	for range cfg.Writers {
		go s.writer()
	}
	return s, nil
}

// safeDir creates dir 0700 if it is missing and checks that only we control
// it.
func safeDir(dir string) (fs.FileInfo, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("spill: creating folder %s: %w", dir, err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("spill: folder %s: %w", dir, err)
	}
	switch st, _ := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("%w: %s is a symbolic link", ErrUnsafeDir, dir)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: %s is not a directory", ErrUnsafeDir, dir)
	case st == nil:
		return nil, fmt.Errorf("%w: %s: no owner information", ErrUnsafeDir, dir)
	case int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("%w: %s is owned by uid %d, not by us (uid %d)", ErrUnsafeDir, dir, st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o022 != 0:
		return nil, fmt.Errorf("%w: %s is writable by group or others (mode %v)", ErrUnsafeDir, dir, fi.Mode().Perm())
	}
	return fi, nil
}

// claim checks that s.dirfd is the folder safeDir checked, locks it and
// removes stale spill files from it.
func (s *Store) claim(fi fs.FileInfo) error {
	var st unix.Stat_t
	if err := unix.Fstat(s.dirfd, &st); err != nil {
		return fmt.Errorf("spill: folder %s: %w", s.dir, err)
	}
	if want := fi.Sys().(*syscall.Stat_t); st.Dev != want.Dev || st.Ino != want.Ino {
		return fmt.Errorf("%w: %s was replaced while being opened", ErrUnsafeDir, s.dir)
	}
	if err := unix.Flock(s.dirfd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", ErrInUse, s.dir)
		}
		return fmt.Errorf("spill: locking folder %s: %w", s.dir, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(s.dirfd, &sfs); err != nil {
		return fmt.Errorf("spill: folder %s: %w", s.dir, err)
	}
	s.align = 4096
	if b := sfs.Bsize; b > s.align && b <= 1<<20 && b&(b-1) == 0 {
		s.align = b
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spill: listing folder %s: %w", s.dir, err)
	}
	for _, de := range entries {
		if !strings.HasPrefix(de.Name(), filePrefix) || !de.Type().IsRegular() {
			continue
		}
		if err := unix.Unlinkat(s.dirfd, de.Name(), 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("spill: removing stale %s: %w", filepath.Join(s.dir, de.Name()), err)
		}
	}
	return nil
}

// statfsUsage is the default Config.Usage.
func statfsUsage(dir string) (size, avail int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize, nil
}

// Dir is the absolute path of the spill folder.
func (s *Store) Dir() string { return s.dir }

// newFile creates a spill file. s.mu is held.
func (s *Store) newFile() (*file, error) {
	for range 100 {
		s.mu.seq++
		name := fmt.Sprintf("%s%d-%06d", filePrefix, os.Getpid(), s.mu.seq)
		fd, err := unix.Openat(s.dirfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue // someone else's file: leave it alone
		}
		if err != nil {
			return nil, fmt.Errorf("spill: creating %s: %w", filepath.Join(s.dir, name), err)
		}
		f := &file{name: name, fd: fd}
		s.mu.files[f] = struct{}{}
		return f, nil
	}
	return nil, fmt.Errorf("%w: %s: every new file name is taken", ErrUnsafeDir, s.dir)
}

// unref drops one reference to f. s.mu is held. A tail left with no object
// stops being the tail. When nothing refers to f any more, it is forgotten
// and the returned action (to run after unlock) removes it; else nil.
func (s *Store) unref(f *file) func() error {
	f.refs--
	if f == s.mu.tail && f.refs == 1 {
		s.mu.tail = nil
		f.refs = 0
	}
	if f.refs > 0 {
		return nil
	}
	delete(s.mu.files, f)
	return func() error { return s.remove(f) }
}

// remove unlinks and closes f, which nothing refers to.
func (s *Store) remove(f *file) error {
	err := unix.Unlinkat(s.dirfd, f.name, 0)
	if errors.Is(err, unix.ENOENT) {
		err = nil // removed by someone else; closing it frees the space
	}
	if cerr := unix.Close(f.fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spill: removing %s: %w", filepath.Join(s.dir, f.name), err)
	}
	return nil
}

// release gives back the disk space of e, which was dropped from the index
// and has no readers. s.mu is held; the returned action runs after unlock.
func (s *Store) release(e *entry) func() error {
	f := e.f
	last := f.refs == 1 || (f == s.mu.tail && f.refs == 2)
	if last || e.size == 0 {
		return s.unref(f) // the whole file goes, or there is nothing to punch
	}
	off, n := e.off, s.alignUp(e.size)
	return func() error {
		// e's reference keeps f.fd open until unref below.
		err := unix.Fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = nil // the bytes come back when the file goes
		}
		if err != nil {
			err = fmt.Errorf("spill: freeing %d bytes of %s: %w", n, filepath.Join(s.dir, f.name), err)
		}
		s.mu.Lock()
		act := s.unref(f)
		s.mu.Unlock()
		return errors.Join(err, run(act))
	}
}

// run runs the actions collected under the lock.
func run(acts ...func() error) error {
	var errs []error
	for _, a := range acts {
		if a != nil {
			errs = append(errs, a())
		}
	}
	return errors.Join(errs...)
}

func (s *Store) alignUp(n int64) int64 { return (n + s.align - 1) &^ (s.align - 1) }

// Close stops the writers, cancels the Spill calls in progress, waits for
// every call to return and removes every file the Store made. Calls after
// Close fail with ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return nil
	}
	s.mu.closed = true
	close(s.closing)
	s.mu.Unlock()

	s.ops.Wait()
	close(s.jobs)
	s.writers.Wait()

	s.mu.Lock()
	var errs []error
	for f := range s.mu.files {
		errs = append(errs, s.remove(f))
	}
	clear(s.mu.files)
	clear(s.mu.objects)
	s.mu.tail = nil
	s.mu.Unlock()
	if err := unix.Close(s.dirfd); err != nil {
		errs = append(errs, fmt.Errorf("spill: closing folder %s: %w", s.dir, err))
	}
	return errors.Join(errs...)
}
