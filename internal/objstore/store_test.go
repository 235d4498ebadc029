package objstore

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/ids"
)

const MiB = 1 << 20

// arenaPath returns a fresh path in /dev/shm (real shared memory) or, if
// there is none, in a temporary directory; the file is removed at cleanup.
func arenaPath(t testing.TB) string {
	var b [8]byte
	rand.Read(b[:])
	dir := "/dev/shm"
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = t.TempDir()
	}
	p := filepath.Join(dir, "rayo-test-"+hex.EncodeToString(b[:]))
	t.Cleanup(func() { os.Remove(p) })
	return p
}

func newArena(t testing.TB, capacity int64) *Arena {
	a, err := CreateArena(arenaPath(t), capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func newStore(t testing.TB, capacity int64) (*Store, *Arena) {
	a := newArena(t, capacity)
	return NewStore(a), a
}

func oid(i int) ids.ObjectID {
	return ids.ForReturn(ids.TaskID{1}, i)
}

func TestCreateSealLookupDelete(t *testing.T) {
	s, a := newStore(t, 16*MiB)
	id := oid(1)
	off, err := s.Create(id, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.Lookup(id); ok {
		t.Fatal("unsealed object visible to Lookup")
	}
	b, err := a.Slice(off, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 100 || cap(b) != 100 {
		t.Fatalf("slice len %d cap %d, want 100 100", len(b), cap(b))
	}
	copy(b, bytes.Repeat([]byte("x"), 100))
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	goff, gsize, ok := s.Lookup(id)
	if !ok || goff != off || gsize != 100 {
		t.Fatalf("Lookup = %d, %d, %v; want %d, 100, true", goff, gsize, ok, off)
	}
	st := s.Stats()
	want := Stats{Capacity: 16 * MiB, Used: 128, Objects: 1, Sealed: 1, LargestFree: 16*MiB - 128}
	if st != want {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
	freed, err := s.Delete(id)
	if err != nil || freed != 128 {
		t.Fatalf("Delete = %d, %v; want 128, nil", freed, err)
	}
	if _, _, ok := s.Lookup(id); ok {
		t.Fatal("deleted object still visible")
	}
	if _, err := s.Delete(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if s.Used() != 0 || s.Len() != 0 || s.Stats().Sealed != 0 {
		t.Fatalf("after delete: %+v", s.Stats())
	}
}

func TestEmptyObject(t *testing.T) {
	s, a := newStore(t, MiB)
	id := oid(1)
	off, err := s.Create(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Slice(off, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	if _, size, ok := s.Lookup(id); !ok || size != 0 {
		t.Fatalf("Lookup: size %d ok %v", size, ok)
	}
	if s.Used() != 0 || s.Len() != 1 {
		t.Fatalf("Used %d Len %d", s.Used(), s.Len())
	}
	if freed, err := s.Delete(id); err != nil || freed != 0 {
		t.Fatalf("Delete = %d, %v", freed, err)
	}
}

func TestSharedMapping(t *testing.T) {
	a := newArena(t, 4*MiB)
	b, err := OpenArena(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Capacity() != a.Capacity() {
		t.Fatalf("opened capacity %d, want %d", b.Capacity(), a.Capacity())
	}
	w, _ := a.Slice(MiB, 5)
	copy(w, "hello")
	r, _ := b.Slice(MiB, 5)
	if string(r) != "hello" {
		t.Fatalf("second mapping reads %q", r)
	}
	copy(r, "HELLO")
	if string(w) != "HELLO" {
		t.Fatalf("first mapping reads %q", w)
	}
}

const helperEnv = "OBJSTORE_HELPER_ARENA"

// TestHelperProcess is not a test: TestChildProcessWrites runs the test
// binary again with it, and it writes into the arena from that process.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process only")
	}
	off, _ := strconv.ParseInt(os.Getenv("OBJSTORE_HELPER_OFF"), 10, 64)
	a, err := OpenArena(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	b, err := a.Slice(off, int64(len(os.Getenv("OBJSTORE_HELPER_DATA"))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	copy(b, os.Getenv("OBJSTORE_HELPER_DATA"))
	if err := a.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func TestChildProcessWrites(t *testing.T) {
	s, a := newStore(t, 4*MiB)
	s.Create(oid(1), 1000) // so the object below is not at offset 0
	const data = "written by another process"
	id := oid(2)
	off, err := s.Create(id, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+a.Path(),
		"OBJSTORE_HELPER_OFF="+strconv.FormatInt(off, 10),
		"OBJSTORE_HELPER_DATA="+data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if err := s.Seal(id); err != nil {
		t.Fatal(err)
	}
	goff, size, _ := s.Lookup(id)
	b, err := a.Slice(goff, size)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != data {
		t.Fatalf("parent reads %q, want %q", b, data)
	}
}

func TestAlignment(t *testing.T) {
	s, _ := newStore(t, 16*MiB)
	for i, size := range []int64{1, 63, 64, 65, 100, 127, 128, 4095, 4097, 1, 3} {
		off, err := s.Create(oid(i), size)
		if err != nil {
			t.Fatal(err)
		}
		if off%64 != 0 {
			t.Fatalf("object %d of size %d at offset %d", i, size, off)
		}
	}
	if want := int64(64 + 64 + 64 + 128 + 128 + 128 + 128 + 4096 + 4160 + 64 + 64); s.Used() != want {
		t.Fatalf("Used = %d, want %d", s.Used(), want)
	}
}

func TestReuse(t *testing.T) {
	s, _ := newStore(t, 16*MiB)
	s.Create(oid(100), 1) // something before, so the free list is not trivial
	a, err := s.Create(oid(1), MiB)
	if err != nil {
		t.Fatal(err)
	}
	s.Create(oid(101), 1) // and something after
	if _, err := s.Delete(oid(1)); err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(oid(2), MiB)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("B at %d, want A's freed offset %d", b, a)
	}
}

func TestPreferRecentlyFreed(t *testing.T) {
	s, _ := newStore(t, 16*MiB)
	var offs [6]int64
	for i := range offs {
		offs[i], _ = s.Create(oid(i), MiB)
	}
	// Two equal 1 MiB holes, separated by live objects; 3 freed last.
	s.Delete(oid(1))
	s.Delete(oid(3))
	if off, _ := s.Create(oid(10), MiB); off != offs[3] {
		t.Fatalf("got %d, want most recently freed %d", off, offs[3])
	}
}

func TestCoalesce(t *testing.T) {
	const c = 4 * MiB
	s, _ := newStore(t, c)
	var offs [4]int64
	for i := range offs {
		var err error
		if offs[i], err = s.Create(oid(i), MiB); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(oid(9), 1); !errors.Is(err, ErrFull) {
		t.Fatalf("store should be full: %v", err)
	}
	// Delete the middle two, in both orders of neighbour merging.
	s.Delete(oid(2))
	s.Delete(oid(1))
	off, err := s.Create(oid(5), 2*MiB)
	if err != nil {
		t.Fatal(err)
	}
	if off != offs[1] {
		t.Fatalf("combined object at %d, want %d", off, offs[1])
	}
	for _, id := range []ids.ObjectID{oid(0), oid(3), oid(5)} {
		s.Delete(id)
	}
	if st := s.Stats(); st.Used != 0 || st.LargestFree != c || s.free.len() != 1 {
		t.Fatalf("after deleting all: %+v, %d free extents", st, s.free.len())
	}
}

func TestErrors(t *testing.T) {
	s, a := newStore(t, MiB)
	if _, err := s.Create(oid(1), MiB+1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if _, err := s.Create(oid(1), -1); err == nil {
		t.Fatal("negative size accepted")
	}
	if _, err := s.Create(oid(1), 600<<10); err != nil {
		t.Fatal(err)
	}
	before := s.Stats()
	_, err := s.Create(oid(2), 600<<10)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("full: %v", err)
	}
	t.Logf("full error: %v", err)
	if s.Stats() != before {
		t.Fatalf("failed Create changed the store: %+v, was %+v", s.Stats(), before)
	}
	if _, err := s.Create(oid(1), 10); !errors.Is(err, ErrExists) {
		t.Fatalf("unsealed duplicate: %v", err)
	}
	if err := s.Seal(oid(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(oid(1), 10); !errors.Is(err, ErrExists) {
		t.Fatalf("sealed duplicate: %v", err)
	}
	if err := s.Seal(oid(1)); !errors.Is(err, ErrSealed) {
		t.Fatalf("seal twice: %v", err)
	}
	if err := s.Seal(oid(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("seal missing: %v", err)
	}
	if err := s.Abort(oid(1)); !errors.Is(err, ErrSealed) {
		t.Fatalf("abort sealed: %v", err)
	}
	if err := s.Abort(oid(3)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("abort missing: %v", err)
	}
	checkAbortFreesSpace(t, s)
	checkArenaErrors(t, a)
}

// checkAbortFreesSpace checks that Abort frees the space of an unsealed
// object, for the next Create to use.
func checkAbortFreesSpace(t *testing.T, s *Store) {
	t.Helper()
	off, err := s.Create(oid(4), 100)
	if err != nil {
		t.Fatal(err)
	}
	used := s.Used()
	if err := s.Abort(oid(4)); err != nil {
		t.Fatal(err)
	}
	if s.Used() != used-128 || s.Len() != 1 {
		t.Fatalf("after Abort: %+v", s.Stats())
	}
	if _, _, ok := s.Lookup(oid(4)); ok {
		t.Fatal("aborted object visible")
	}
	if off2, _ := s.Create(oid(4), 100); off2 != off {
		t.Fatalf("aborted space not reused: %d vs %d", off2, off)
	}
}

// checkArenaErrors checks the errors of a's methods: slices out of range, a
// second arena over its file, and use after Close and Remove.
func checkArenaErrors(t *testing.T, a *Arena) {
	t.Helper()
	for _, r := range [][2]int64{{-1, 1}, {0, -1}, {0, MiB + 1}, {MiB, 1}, {MiB - 1, 2}, {1, 1<<63 - 1}} {
		if _, err := a.Slice(r[0], r[1]); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("Slice(%d, %d): %v", r[0], r[1], err)
		}
	}
	if b, err := a.Slice(MiB, 0); err != nil || len(b) != 0 {
		t.Fatalf("empty slice at end: %v", err)
	}
	if _, err := CreateArena(a.Path(), MiB); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreateArena over existing file: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Slice(0, 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("Slice after Close: %v", err)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := OpenArena(a.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("OpenArena after Remove: %v", err)
	}
}

// TestRandom runs random create/delete sequences and checks the allocator
// against the object table after every step.
func TestRandom(t *testing.T) {
	const c = 8 * MiB
	s, _ := newStore(t, c)
	r := mrand.New(mrand.NewPCG(1, 2))
	var live []ids.ObjectID
	next := 0
	for step := range 20000 {
		if len(live) > 0 && r.IntN(100) < 45 {
			i := r.IntN(len(live))
			if _, err := s.Delete(live[i]); err != nil {
				t.Fatal(err)
			}
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		} else {
			var size int64
			switch r.IntN(10) {
			case 0:
				size = r.Int64N(MiB)
			case 1:
				size = 0
			default:
				size = r.Int64N(4096)
			}
			id := oid(next)
			next++
			used := s.Used()
			_, err := s.Create(id, size)
			switch {
			case err == nil:
				live = append(live, id)
				if r.IntN(2) == 0 {
					s.Seal(id)
				}
			case errors.Is(err, ErrFull):
				if s.Used() != used {
					t.Fatal("failed Create changed Used")
				}
			default:
				t.Fatal(err)
			}
		}
		if step%97 == 0 {
			checkStore(t, s)
		}
	}
	checkStore(t, s)
	for _, id := range live {
		if _, err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	checkStore(t, s)
	if s.Used() != 0 || s.Len() != 0 || s.free.len() != 1 || s.free.largest() != c {
		t.Fatalf("after deleting all: %+v, %d free extents", s.Stats(), s.free.len())
	}
}

// checkStore verifies that live objects are aligned and disjoint, Used is
// the sum of their rounded sizes, and the free extents are coalesced and
// cover exactly the rest of the arena.
func checkStore(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	type span struct {
		off, end int64
		free     bool
	}
	var spans []span
	var used int64
	sealed := 0
	for id, o := range s.objects {
		if o.off%align != 0 || o.alloc != (o.size+align-1)&^(align-1) {
			t.Fatalf("object %s: %+v", id, o)
		}
		used += o.alloc
		if o.sealed {
			sealed++
		}
		if o.alloc > 0 {
			spans = append(spans, span{o.off, o.off + o.alloc, false})
		}
	}
	if used != s.used || sealed != s.sealed {
		t.Fatalf("used %d sealed %d, table says %d %d", s.used, s.sealed, used, sealed)
	}
	n := 0
	var walk func(e *extent)
	walk = func(e *extent) {
		if e == nil {
			return
		}
		n++
		if (e.left != nil && !before(e.left, e)) || (e.right != nil && !before(e, e.right)) {
			t.Fatal("treap out of order")
		}
		if s.free.byOff[e.off] != e || s.free.byEnd[e.off+e.size] != e {
			t.Fatalf("extent %d+%d not indexed", e.off, e.size)
		}
		spans = append(spans, span{e.off, e.off + e.size, true})
		walk(e.left)
		walk(e.right)
	}
	walk(s.free.root)
	if n != len(s.free.byOff) || n != len(s.free.byEnd) {
		t.Fatalf("%d extents in treap, %d/%d indexed", n, len(s.free.byOff), len(s.free.byEnd))
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	var at int64
	for i, sp := range spans {
		if sp.off != at {
			t.Fatalf("span %d starts at %d, want %d (overlap or leak)", i, sp.off, at)
		}
		if sp.free && i > 0 && spans[i-1].free {
			t.Fatalf("adjacent free extents at %d", sp.off)
		}
		at = sp.end
	}
	if at != s.capacity {
		t.Fatalf("spans end at %d, capacity %d", at, s.capacity)
	}
}

func TestConcurrent(t *testing.T) {
	s, a := newStore(t, 64*MiB)
	done := make(chan error)
	for g := range 4 {
		go func() {
			var err error
			defer func() { done <- err }()
			for i := range 2000 {
				id := oid(g<<20 | i)
				var off int64
				if off, err = s.Create(id, int64(i%5000)); err != nil {
					return
				}
				b, _ := a.Slice(off, int64(i%5000))
				for j := range b {
					b[j] = byte(g)
				}
				if err = s.Seal(id); err != nil {
					return
				}
				if i%2 == 0 {
					if _, err = s.Delete(id); err != nil {
						return
					}
				}
				s.Stats()
			}
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	checkStore(t, s)
	for g := range 4 {
		for i := 1; i < 2000; i += 2 {
			off, size, ok := s.Lookup(oid(g<<20 | i))
			if !ok {
				t.Fatalf("object %d/%d missing", g, i)
			}
			b, _ := a.Slice(off, size)
			if len(b) > 0 && (b[0] != byte(g) || b[len(b)-1] != byte(g)) {
				t.Fatalf("object %d/%d overwritten", g, i)
			}
		}
	}
}

func TestDefaultCapacity(t *testing.T) {
	c, source := DefaultSizing()
	if c < 64*MiB || c%4096 != 0 || source == "" {
		t.Fatalf("DefaultSizing = %d (%s)", c, source)
	}
	// 30% of the node's memory total (cgroup-aware), not of raw RAM.
	m, err := hostres.ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	if limit := m.Total / 10 * 3; c > limit && c > 64*MiB {
		t.Fatalf("DefaultSizing = %d, above 30%% of the node's %d bytes", c, m.Total)
	}
	if c != DefaultCapacity() {
		t.Fatalf("DefaultCapacity = %d, DefaultSizing = %d", DefaultCapacity(), c)
	}
	t.Logf("DefaultCapacity = %d MiB (%s)", c/MiB, source)
}

func BenchmarkCreateDelete(b *testing.B) {
	s, _ := newStore(b, 256*MiB)
	// A standing population, so the free list is fragmented as in real use.
	const standing = 10000
	for i := range standing {
		s.Create(oid(i), int64(64+i%1000))
		if i%3 == 0 {
			s.Delete(oid(i))
		}
	}
	ring := make([]ids.ObjectID, 1024)
	for i := range ring {
		ring[i] = oid(standing + i)
	}
	b.ResetTimer()
	for i := range b.N {
		id := ring[i%len(ring)]
		if i >= len(ring) {
			if _, err := s.Delete(id); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.Create(id, int64(100+i%3000)); err != nil {
			b.Fatal(err)
		}
		if err := s.Seal(id); err != nil {
			b.Fatal(err)
		}
	}
}

const size64 = 64 * MiB

func BenchmarkPut64MiB(b *testing.B) {
	s, a := newStore(b, 4*size64)
	src := make([]byte, size64)
	rand.Read(src)
	id := oid(1)
	b.SetBytes(size64)
	b.ResetTimer()
	for range b.N {
		off, err := s.Create(id, size64)
		if err != nil {
			b.Fatal(err)
		}
		dst, err := a.Slice(off, size64)
		if err != nil {
			b.Fatal(err)
		}
		copy(dst, src)
		if err := s.Seal(id); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Delete(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut64MiBCold is BenchmarkPut64MiB into a fresh arena every time,
// so every page is faulted in: the cost avoided by reusing freed space.
func BenchmarkPut64MiBCold(b *testing.B) {
	src := make([]byte, size64)
	rand.Read(src)
	b.SetBytes(size64)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		a, err := CreateArena(arenaPath(b), size64)
		if err != nil {
			b.Fatal(err)
		}
		dst, _ := a.Slice(0, size64)
		b.StartTimer()
		copy(dst, src)
		b.StopTimer()
		a.Close()
		a.Remove()
		b.StartTimer()
	}
}

func BenchmarkMemcpy64MiB(b *testing.B) {
	src := make([]byte, size64)
	dst := make([]byte, size64)
	rand.Read(src)
	copy(dst, src)
	b.SetBytes(size64)
	b.ResetTimer()
	for range b.N {
		copy(dst, src)
	}
}
