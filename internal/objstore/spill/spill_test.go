package spill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// open opens a Store in a fresh folder and closes it at the end of the
// test, checking that it leaves the folder empty.
func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "spill")
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if names := list(t, s.Dir()); len(names) != 0 {
			t.Errorf("after Close the folder holds %v", names)
		}
	})
	return s
}

// list names the files in dir.
func list(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// diskBytes sums the allocated blocks of the files in dir.
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var sum int64
	for _, name := range list(t, dir) {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sum += fi.Sys().(*syscall.Stat_t).Blocks * 512
	}
	return sum
}

// pool is random bytes that test objects are cut from.
var pool = func() []byte {
	p := make([]byte, mib+4093)
	_, _ = rand.NewChaCha8([32]byte{42}).Read(p)
	return p
}()

// randomObjects makes objects of the given sizes with pseudo-random
// contents, cut from one buffer, and their checksums. Each object is the
// pool read from a random place, with each 4 KiB block stamped with the
// seed, the object and the block, so that no two blocks are alike. (Copies
// keep this fast under the race detector.)
func randomObjects(seed uint64, sizes ...int) ([]Object, map[ids.ObjectID][32]byte) {
	total := 0
	for _, n := range sizes {
		total += n
	}
	buf := make([]byte, total)
	r := rand.New(rand.NewPCG(seed, 7))
	objs := make([]Object, len(sizes))
	sums := make(map[ids.ObjectID][32]byte, len(sizes))
	for i, n := range sizes {
		d := buf[:n:n]
		for off := 0; off < n; {
			start := r.IntN(len(pool) / 2)
			off += copy(d[off:], pool[start:])
		}
		for b := 0; b+8 <= n; b += 4096 {
			binary.LittleEndian.PutUint64(d[b:], seed<<40^uint64(i)<<20^uint64(b/4096))
		}
		objs[i] = Object{ID: ids.ForPut(), Data: d}
		sums[objs[i].ID] = sha256.Sum256(d)
		buf = buf[n:]
	}
	return objs, sums
}

// scribble overwrites the objects' bytes, as the store frees and reuses
// their memory once they are spilled.
func scribble(objs []Object) {
	for _, o := range objs {
		for off := 0; off < len(o.Data); {
			off += copy(o.Data[off:], pool[len(pool)-4093:])
		}
	}
}

// readAll restores an object in chunks of the given size and checks its
// checksum.
func readAll(t testing.TB, s *Store, id ids.ObjectID, chunk int, want [32]byte) {
	t.Helper()
	size, ok := s.Has(id)
	if !ok {
		t.Fatalf("Has(%s) = false", id)
	}
	got := make([]byte, size)
	for off := 0; off < int(size) || off == 0; off += chunk {
		end := min(off+chunk, int(size))
		n, err := s.ReadAt(id, got[off:end], int64(off))
		if err != nil || n != end-off {
			t.Fatalf("ReadAt(%s, [%d:%d]) = %d, %v", id, off, end, n, err)
		}
		if size == 0 {
			break
		}
	}
	if sha256.Sum256(got) != want {
		t.Fatalf("object %s of %d bytes: checksum differs", id, size)
	}
}

func TestSpillReadSizes(t *testing.T) {
	s := open(t, Config{FileSize: mib})
	sizes := []int{0, 1, 2, 63, 4095, 4096, 4097, 200 * kib, mib - 1, mib, mib + 1, 3*mib + 5, 1, 0}
	objs, sums := randomObjects(1, sizes...)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	scribble(objs)
	for i, o := range objs {
		if n, ok := s.Has(o.ID); !ok || n != int64(sizes[i]) {
			t.Fatalf("Has(object %d) = %d, %v; want %d, true", i, n, ok, sizes[i])
		}
		for _, chunk := range []int{1 << 30, 64 * kib, 4093} {
			if sizes[i] > 300*kib && chunk == 4093 {
				continue // enough small reads already
			}
			readAll(t, s, o.ID, chunk, sums[o.ID])
		}
	}
	// Reads past the end behave as io.ReaderAt's.
	big := objs[9] // mib bytes
	p := make([]byte, 10)
	if n, err := s.ReadAt(big.ID, p, mib-4); n != 4 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt over the end = %d, %v; want 4, io.EOF", n, err)
	}
	if n, err := s.ReadAt(big.ID, p, mib); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := s.ReadAt(big.ID, nil, mib); n != 0 || err != nil {
		t.Errorf("empty ReadAt at the end = %d, %v; want 0, nil", n, err)
	}
	st := s.Stats()
	var total int64
	for _, n := range sizes {
		total += int64(n)
	}
	if st.Objects != len(sizes) || st.LiveBytes != total || st.SpilledObjects != int64(len(sizes)) || st.SpilledBytes != total || st.SpillCalls != 1 || st.SpillTime <= 0 {
		t.Errorf("Stats = %+v; want %d objects and %d bytes from one call", st, len(sizes), total)
	}
	if st.ReadCalls == 0 || st.ReadTime <= 0 || st.RestoredBytes < 2*total || st.RestoredObjects < int64(2*len(sizes)) {
		t.Errorf("Stats = %+v; want at least two whole restores of every object", st)
	}
}

func TestReadAtErrors(t *testing.T) {
	s := open(t, Config{})
	objs, _ := randomObjects(2, 100)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 10)
	for _, tc := range []struct {
		name string
		id   ids.ObjectID
		off  int64
		want error
	}{
		{"unknown object", ids.ForPut(), 0, ErrNotFound},
		{"negative offset", objs[0].ID, -1, ErrOutOfRange},
		{"offset past the end", objs[0].ID, 101, ErrOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n, err := s.ReadAt(tc.id, p, tc.off); n != 0 || !errors.Is(err, tc.want) {
				t.Errorf("ReadAt = %d, %v; want 0, %v", n, err, tc.want)
			}
		})
	}
	if _, ok := s.Has(ids.ForPut()); ok {
		t.Error("Has(unknown) = true")
	}
	if err := s.Delete(ids.ForPut()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(unknown) = %v; want ErrNotFound", err)
	}
	if err := s.Delete(objs[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(objs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v; want ErrNotFound", err)
	}
}

func TestSpillRefusesDuplicates(t *testing.T) {
	s := open(t, Config{})
	objs, _ := randomObjects(3, 10, 20)
	if err := s.Spill(context.Background(), []Object{objs[0], objs[1], objs[0]}); !errors.Is(err, ErrExists) {
		t.Fatalf("Spill of an object given twice = %v; want ErrExists", err)
	}
	if _, ok := s.Has(objs[1].ID); ok {
		t.Fatal("a refused call left an object behind")
	}
	if err := s.Spill(context.Background(), objs[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Spill(context.Background(), objs); !errors.Is(err, ErrExists) {
		t.Fatalf("Spill of a spilled object = %v; want ErrExists", err)
	}
	if _, ok := s.Has(objs[1].ID); ok {
		t.Fatal("a refused call left an object behind")
	}
	if err := s.Spill(context.Background(), nil); err != nil {
		t.Fatalf("Spill(nil) = %v", err)
	}
}

func TestFusing(t *testing.T) {
	s := open(t, Config{})
	sizes := make([]int, 1001)
	for i := range 1000 {
		sizes[i] = 200 * kib
	}
	sizes[1000] = 100 * mib
	objs, sums := randomObjects(4, sizes...)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	scribble(objs)
	// 1,000 x 200 KiB = 195.3 MiB fill three 64 MiB files and part of a
	// fourth; the 100 MiB object has its own.
	if st, names := s.Stats(), list(t, s.Dir()); st.Files != 5 || len(names) != 5 {
		t.Fatalf("%d files (%v), Stats.Files %d; want 5", len(names), names, st.Files)
	}
	big := s.mu.objects[objs[1000].ID]
	for _, o := range objs[:1000] {
		if s.mu.objects[o.ID].f == big.f {
			t.Fatal("a small object shares the 100 MiB object's file")
		}
	}
	// Small objects of a later call go on filling the last fused file.
	more, moreSums := randomObjects(5, 200*kib, 1)
	if err := s.Spill(context.Background(), more); err != nil {
		t.Fatal(err)
	}
	if n := len(list(t, s.Dir())); n != 5 {
		t.Fatalf("%d files after a second small call; want still 5", n)
	}
	for _, o := range append(objs[995:], more...) {
		want, ok := sums[o.ID]
		if !ok {
			want = moreSums[o.ID]
		}
		readAll(t, s, o.ID, 4*mib, want)
	}
}

func TestDeleteReclaimsDisk(t *testing.T) {
	s := open(t, Config{FileSize: 8 * mib})
	sizes := make([]int, 200)
	for i := range sizes {
		sizes[i] = 100*kib + i*37 // unaligned sizes
	}
	sizes = append(sizes, 20*mib)
	objs, sums := randomObjects(6, sizes...)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	var live int64
	for _, n := range sizes {
		live += int64(n)
	}
	full := diskBytes(t, s.Dir())
	if full < live || s.Stats().DiskBytes != full {
		t.Fatalf("disk usage %d (Stats %d) for %d live bytes", full, s.Stats().DiskBytes, live)
	}
	// Deleting every other small object punches holes in the fused files:
	// their blocks return, though no file goes.
	files := len(list(t, s.Dir()))
	var freed int64
	for i := 0; i < 200; i += 2 {
		if err := s.Delete(objs[i].ID); err != nil {
			t.Fatal(err)
		}
		freed += int64(sizes[i])
	}
	half := diskBytes(t, s.Dir())
	if len(list(t, s.Dir())) != files {
		t.Fatalf("files went from %d to %d; want them kept", files, len(list(t, s.Dir())))
	}
	if half > full-freed {
		t.Fatalf("disk usage %d after freeing %d of %d; want at most %d", half, freed, full, full-freed)
	}
	for i := 1; i < 200; i += 2 {
		readAll(t, s, objs[i].ID, mib, sums[objs[i].ID])
	}
	// The big object's file goes with it.
	if err := s.Delete(objs[200].ID); err != nil {
		t.Fatal(err)
	}
	if got := len(list(t, s.Dir())); got != files-1 {
		t.Fatalf("%d files after deleting the big object; want %d", got, files-1)
	}
	for i := 1; i < 200; i += 2 {
		if err := s.Delete(objs[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	if names := list(t, s.Dir()); len(names) != 0 {
		t.Fatalf("after deleting everything the folder holds %v", names)
	}
	if st := s.Stats(); st.Objects != 0 || st.LiveBytes != 0 || st.Files != 0 || st.DiskBytes != 0 || st.DeletedObjects != 201 {
		t.Fatalf("Stats after deleting everything = %+v", st)
	}
}

func TestDiskFull(t *testing.T) {
	const size = 1000 * mib
	var avail atomic.Int64
	avail.Store(60 * mib) // 94% used
	var usageErr atomic.Pointer[error]
	s := open(t, Config{Usage: func(dir string) (int64, int64, error) {
		if e := usageErr.Load(); e != nil {
			return 0, 0, *e
		}
		return size, avail.Load(), nil
	}})
	objs, sums := randomObjects(7, 12*mib, 4*mib)
	err := s.Spill(context.Background(), objs)
	var df *DiskFullError
	if !errors.Is(err, ErrDiskFull) || !errors.As(err, &df) {
		t.Fatalf("Spill at 94%% + 16 MiB = %v; want ErrDiskFull", err)
	}
	if df.Dir != s.Dir() || df.Size != size || df.Used != size-60*mib || df.Need != 16*mib || df.Threshold != 0.95 {
		t.Errorf("DiskFullError = %+v", df)
	}
	for _, want := range []string{s.Dir(), "94.0% full", "95% threshold"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if names := list(t, s.Dir()); len(names) != 0 {
		t.Fatalf("a refused Spill wrote %v", names)
	}
	if _, ok := s.Has(objs[0].ID); ok {
		t.Fatal("a refused Spill left an object")
	}
	// 4 MiB fits under 95%.
	if err := s.Spill(context.Background(), objs[1:]); err != nil {
		t.Fatalf("Spill of 4 MiB at 94%%: %v", err)
	}
	readAll(t, s, objs[1].ID, mib, sums[objs[1].ID])
	avail.Store(100 * mib)
	if err := s.Spill(context.Background(), objs[:1]); err != nil {
		t.Fatalf("Spill after space came back: %v", err)
	}
	boom := errors.New("statfs failed")
	usageErr.Store(&boom)
	more, _ := randomObjects(8, 1)
	if err := s.Spill(context.Background(), more); !errors.Is(err, boom) {
		t.Fatalf("Spill when usage fails = %v; want it wrapped", err)
	}
}

// scriptedCtx is a context whose Err is scripted, for stopping a Spill at
// a chosen point: Spill checks Err on entry and before each write.
type scriptedCtx struct {
	context.Context
	err func() error
}

func (c scriptedCtx) Err() error { return c.err() }

func TestDiskFullCountsSpillsInProgress(t *testing.T) {
	// Two calls that fit alone but not together: while the first one is
	// writing, the second must count its bytes, which the file system does
	// not show yet.
	s := open(t, Config{Usage: func(string) (int64, int64, error) {
		return 100 * mib, 10 * mib, nil // 90% used
	}})
	a, sums := randomObjects(9, 3*mib)
	b, _ := randomObjects(10, 3*mib)
	writing, release := make(chan struct{}), make(chan struct{})
	var checks atomic.Int32
	ctx := scriptedCtx{context.Background(), func() error {
		if checks.Add(1) == 2 { // the writer's check before its first write
			close(writing)
			<-release
		}
		return nil
	}}
	errA := make(chan error, 1)
	go func() { errA <- s.Spill(ctx, a) }()
	<-writing
	err := s.Spill(context.Background(), b)
	close(release)
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Spill of 3 MiB at 90%% + 3 MiB in progress = %v; want ErrDiskFull", err)
	}
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	readAll(t, s, a[0].ID, mib, sums[a[0].ID])
	if err := s.Spill(context.Background(), b); err != nil {
		t.Fatalf("Spill of 3 MiB at 90%% alone: %v", err)
	}
}

func TestSpillCancelled(t *testing.T) {
	s := open(t, Config{FileSize: 4 * mib, Writers: 2})
	keep, keepSums := randomObjects(11, 100*kib, 3*mib)
	if err := s.Spill(context.Background(), keep); err != nil {
		t.Fatal(err)
	}
	before := diskBytes(t, s.Dir())
	files := list(t, s.Dir())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	objs, _ := randomObjects(12, 1*mib, 5*mib)
	if err := s.Spill(ctx, objs); !errors.Is(err, context.Canceled) {
		t.Fatalf("Spill with a cancelled context = %v; want context.Canceled", err)
	}

	// Cancelled after some writes: sizes that need several files and
	// several writes each, and a context that turns cancelled at its 6th
	// look, in the middle of the writing.
	sizes := []int{30 * kib, 3 * mib, 2 * mib, 40 * mib, 5, 3 * mib, 40 * mib}
	objs, _ = randomObjects(13, sizes...)
	var looks atomic.Int32
	ctx2 := scriptedCtx{context.Background(), func() error {
		if looks.Add(1) >= 6 {
			return context.Canceled
		}
		return nil
	}}
	if err := s.Spill(ctx2, objs); !errors.Is(err, context.Canceled) {
		t.Fatalf("Spill cancelled midway = %v; want context.Canceled", err)
	}
	for _, o := range objs {
		if _, ok := s.Has(o.ID); ok {
			t.Fatalf("a cancelled Spill left object %s", o.ID)
		}
	}
	if got := diskBytes(t, s.Dir()); got > before {
		t.Fatalf("disk usage %d after a cancelled Spill; want at most %d as before", got, before)
	}
	if got := list(t, s.Dir()); len(got) != len(files) {
		t.Fatalf("files %v after a cancelled Spill; before %v", got, files)
	}
	if st := s.Stats(); st.FailedSpills != 1 || st.Objects != 2 {
		t.Fatalf("Stats = %+v; want one failed call and 2 objects", st)
	}
	for _, o := range keep {
		readAll(t, s, o.ID, mib, keepSums[o.ID])
	}
	// The same objects spill fine afterwards.
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
}
