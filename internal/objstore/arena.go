package objstore

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/hostres"
)

// Arena is a shared-memory file mapped read-write and MAP_SHARED into this
// process. Bytes written through one Arena are visible through every other
// mapping of the same file, in this process or another.
type Arena struct {
	path     string
	capacity int64

	mu   sync.RWMutex // guards data and fd: Slice holds it shared, Close exclusively
	data []byte       // the whole mapping; nil once closed
	ro   []byte       // the same memory mapped read-only, for readers
	fd   int          // -1 once closed

	w *writeState // what WriteAt knows of this process's mapping
}

// CreateArena creates the file at path (it must not exist), sizes it to
// capacity bytes and maps it. On tmpfs the file is sparse: pages are
// committed only when first touched.
func CreateArena(path string, capacity int64) (*Arena, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("objstore: create arena %s: capacity %d must be positive", path, capacity)
	}
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	if err := unix.Ftruncate(fd, capacity); err != nil {
		unix.Close(fd)
		unix.Unlink(path)
		return nil, &os.PathError{Op: "ftruncate", Path: path, Err: err}
	}
	a, err := mapArena(path, fd, capacity)
	if err != nil {
		unix.Unlink(path)
		return nil, err
	}
	return a, nil
}

// OpenArena maps the existing arena file at path, as created by CreateArena
// in another process. The capacity is the size of the file.
func OpenArena(path string) (*Arena, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Size <= 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("objstore: open arena %s: empty file", path)
	}
	return mapArena(path, fd, st.Size)
}

// mapArena maps the first size bytes of fd; it closes fd if it fails.
func mapArena(path string, fd int, size int64) (*Arena, error) {
	if int64(int(size)) != size {
		unix.Close(fd)
		return nil, fmt.Errorf("objstore: arena %s: size %d does not fit in the address space", path, size)
	}
	data, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	ro, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Munmap(data)
		unix.Close(fd)
		return nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	a := &Arena{path: path, capacity: size, data: data, ro: ro, fd: fd, w: newWriteState(size)}
	a.w.mapper = a.mapChunk
	return a, nil
}

// Path is the file the arena maps.
func (a *Arena) Path() string { return a.path }

// Capacity is the size of the arena in bytes.
func (a *Arena) Capacity() int64 { return a.capacity }

// Slice returns the mapped bytes [off, off+size), with cap equal to len so
// appends cannot run into the next object. The slice is valid until Close:
// touching it afterwards crashes the process.
func (a *Arena) Slice(off, size int64) ([]byte, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.sub(a.data, off, size)
}

// sub is [off, off+size) of mapping m, checked; a.mu is held.
func (a *Arena) sub(m []byte, off, size int64) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: arena %s is closed", ErrOutOfRange, a.path)
	}
	if off < 0 || size < 0 || off > a.capacity-size {
		return nil, fmt.Errorf("%w: [%d, %d+%d) outside arena of %d bytes", ErrOutOfRange, off, off, size, a.capacity)
	}
	return m[off : off+size : off+size], nil
}

// View is Slice through the read-only mapping: what readers of sealed
// objects get, so that a stray write faults instead of changing an
// immutable object under everyone else.
func (a *Arena) View(off, size int64) ([]byte, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.sub(a.ro, off, size)
}

// InView reports whether addr lies in the read-only mapping.
func (a *Arena) InView(addr uintptr) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if len(a.ro) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(&a.ro[0]))
	return addr >= start && addr < start+uintptr(len(a.ro))
}

// Close unmaps the arena and closes its file; the file itself stays (see
// Remove). Close is idempotent.
func (a *Arena) Close() error {
	a.w.stopMapper() // before the lock: the mapper holds it shared
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.data == nil {
		return nil
	}
	err := unix.Munmap(a.data)
	if rerr := unix.Munmap(a.ro); err == nil {
		err = rerr
	}
	a.data, a.ro = nil, nil
	if cerr := unix.Close(a.fd); err == nil {
		err = cerr
	}
	a.fd = -1
	if err != nil {
		return fmt.Errorf("objstore: close arena %s: %w", a.path, err)
	}
	return nil
}

// Remove unlinks the arena file; mappings stay valid until closed. The
// creator calls it at shutdown. Remove is idempotent.
func (a *Arena) Remove() error {
	if strings.HasPrefix(a.path, memfdPrefix) {
		return nil
	}
	if err := unix.Unlink(a.path); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "remove", Path: a.path, Err: err}
	}
	return nil
}

// DefaultCapacity is the arena size to use when none is configured (see
// DefaultSizing).
func DefaultCapacity() int64 {
	c, _ := DefaultSizing()
	return c
}

// DefaultSizing is the arena size to use when none is configured, and
// where the figure comes from: 30% of the node's memory total (the
// cgroup's memory limit when it has one below the RAM, else the RAM), and
// at least 64 MiB. The store is an anonymous memory file (memfd), which
// the size of /dev/shm does not bound (container runtimes make that 64
// MiB): its pages are charged to the memory cgroup like any other.
func DefaultSizing() (int64, string) {
	const minCapacity = 64 << 20
	var c int64
	source := "no memory figure"
	if m, err := hostres.ReadMemory(); err == nil {
		c = m.Total / 10 * 3
		source = fmt.Sprintf("30%% of %d MiB, %s", m.Total>>20, m.Source)
	}
	c &^= 4095 // whole pages
	if c < minCapacity {
		return minCapacity, "the 64 MiB minimum"
	}
	return c, source
}

// memfdPrefix marks the Path of an arena that has no file name: an
// anonymous memory file, freed by the kernel when the last process holding
// it exits, so no crash can leave it behind.
const memfdPrefix = "memfd:"

// CreateAnonArena makes an arena in an anonymous memory file (memfd). Other
// processes map it through a copy of its descriptor (File), passed to them
// when they start.
func CreateAnonArena(name string, capacity int64) (*Arena, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("objstore: create arena %s: capacity %d must be positive", name, capacity)
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("objstore: memfd_create %s: %w", name, err)
	}
	if err := unix.Ftruncate(fd, capacity); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("objstore: size arena %s: %w", name, err)
	}
	return mapArena(memfdPrefix+name, fd, capacity)
}

// FD is the arena's descriptor in this process: another process of the
// same user maps it through /proc/PID/fd/FD.
func (a *Arena) FD() int {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.fd
}

// File returns a new descriptor of the arena's memory, for a child process
// (exec.Cmd.ExtraFiles); the caller closes it.
func (a *Arena) File() (*os.File, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.data == nil {
		return nil, fmt.Errorf("%w: arena %s is closed", ErrOutOfRange, a.path)
	}
	fd, err := unix.Dup(a.fd)
	if err != nil {
		return nil, fmt.Errorf("objstore: dup arena %s: %w", a.path, err)
	}
	return os.NewFile(uintptr(fd), a.path), nil
}

// OpenArenaFd maps an arena from a descriptor inherited from its creator.
// The arena takes the descriptor over.
func OpenArenaFd(fd int, name string) (*Arena, error) {
	unix.CloseOnExec(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("objstore: arena fd %d: %w", fd, err)
	}
	if st.Size <= 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("objstore: arena fd %d: empty", fd)
	}
	return mapArena(name, fd, st.Size)
}
