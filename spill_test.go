package rayo

import (
	"errors"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/testcluster/pattern"
)

var (
	checksum  = Func1(func(b []byte) uint32 { return crc32.ChecksumIEEE(b) })
	randBytes = Func2(func(n int, seed uint64) []byte { return pattern.Bytes(n, seed) })
)

// spillDirEmpty waits until the spill folder holds no file and the store
// no object: everything released came back.
func spillDirEmpty(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		runtime.GC()
		var files []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		st := localRaylet().StoreStats()
		sp := localRaylet().SpillStats()
		if len(files) == 0 && st.Used == 0 && sp.Objects == 0 && sp.DiskBytes == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after release: %d spill files, store %+v, spilled %+v", len(files), st, sp)
		}
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
}

// TestSpillingKeepsEverything: 256 MiB of live 8 MiB objects in a 32 MiB
// store are put, made by tasks, passed to tasks and read back, and every
// checksum matches; released, they leave store and spill folder empty.
func TestSpillingKeepsEverything(t *testing.T) {
	dir := t.TempDir() + "/spill"
	restart(t, NumCPUs(2), ObjectStoreMemory(32<<20), ObjectSpillingDir(dir))
	ctx := ctxT(t)
	const n, size = 32, 8 << 20
	refs := make([]Ref[[]byte], n)
	sums := make([]uint32, n)
	for i := range refs {
		if i%2 == 0 {
			b := pattern.Bytes(size, uint64(i))
			sums[i] = crc32.ChecksumIEEE(b)
			refs[i] = Put(ctx, b)
		} else {
			sums[i] = crc32.ChecksumIEEE(pattern.Bytes(size, uint64(i)))
			refs[i] = randBytes.Remote(V(size), V(uint64(i))) // a task's result
		}
		if err := refs[i].Err(); err != nil {
			t.Fatalf("object %d: %v", i, err)
		}
	}
	// The state API says which are on disk, and the node how much.
	var objs apiList
	apiGet(t, "/api/v0/objects?limit=10000&filter=location=SPILLED", &objs)
	var nodes apiList
	apiGet(t, "/api/v0/nodes", &nodes)
	if len(objs.Result) == 0 || len(nodes.Result) != 1 || nodes.Result[0]["object_store_spilled_bytes"].(float64) < size {
		t.Fatalf("state API: %d objects SPILLED, nodes %v", len(objs.Result), nodes.Result)
	}
	// Each object read by a task (restored from disk for it) and by Get.
	crcs := make([]Ref[uint32], n)
	for i, r := range refs {
		crcs[i] = checksum.Remote(r)
	}
	for i := range refs {
		if got, err := Get(ctx, crcs[i]); err != nil || got != sums[i] {
			t.Fatalf("task's checksum of object %d: %x %v, want %x", i, got, err, sums[i])
		}
		b, err := Get(ctx, refs[i])
		if err != nil || len(b) != size || crc32.ChecksumIEEE(b) != sums[i] {
			t.Fatalf("Get of object %d: %d bytes, %v", i, len(b), err)
		}
	}
	sp := localRaylet().SpillStats()
	if sp.SpilledObjects < n/2 || sp.RestoredObjects == 0 {
		t.Fatalf("spilled %d objects, restored %d: want most spilled and some restored", sp.SpilledObjects, sp.RestoredObjects)
	}
	if used, c := localRaylet().StoreStats().Used, localRaylet().StoreStats().Capacity; used > c {
		t.Fatalf("store uses %d of %d", used, c)
	}
	t.Logf("spilled %d objects (%d MiB), restored %d", sp.SpilledObjects, sp.SpilledBytes>>20, sp.RestoredObjects)
	for _, r := range refs {
		r.Release()
	}
	refs, crcs = nil, nil
	spillDirEmpty(t, dir)
}

// TestStoreFullWhenEverythingIsPinned: objects that are read (a View) do
// not spill, so a Put that needs their room fails, saying so; once the
// view goes it fits.
func TestStoreFullWhenEverythingIsPinned(t *testing.T) {
	restart(t, NumCPUs(1), ObjectStoreMemory(16<<20))
	ctx := ctxT(t)
	first := Put(ctx, pattern.Bytes(10<<20, 1))
	v, err := GetView(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	r := Put(ctx, make([]byte, 10<<20))
	if !errors.Is(r.Err(), ErrStoreFull) || !strings.Contains(r.Err().Error(), "pinned") {
		t.Fatalf("want ErrStoreFull saying the objects are pinned, got %v", r.Err())
	}
	// A task whose result does not fit fails with the same error.
	_, err = Get(ctx, makeVec.Remote(V(10<<17), V(1.0)))
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("task result: want ErrStoreFull, got %v", err)
	}
	v.Release()
	second := Put(ctx, make([]byte, 10<<20)) // the first spills now
	if err := second.Err(); err != nil {
		t.Fatalf("after the view was released: %v", err)
	}
	if b, err := Get(ctx, first); err != nil || crc32.ChecksumIEEE(b) != crc32.ChecksumIEEE(pattern.Bytes(10<<20, 1)) {
		t.Fatalf("the first object after it spilled: %v", err)
	}
}

// TestStoreFullWhenDiskIsFull: past the spill folder's threshold nothing
// spills, and a Put that does not fit fails naming the folder; nothing
// stored is lost.
func TestStoreFullWhenDiskIsFull(t *testing.T) {
	dir := t.TempDir() + "/spill"
	restart(t, NumCPUs(1), ObjectStoreMemory(16<<20), ObjectSpillingDir(dir), ObjectSpillingThreshold(1e-9))
	ctx := ctxT(t)
	keep := Put(ctx, pattern.Bytes(10<<20, 2))
	if keep.Err() != nil {
		t.Fatal(keep.Err())
	}
	r := Put(ctx, make([]byte, 10<<20))
	if !errors.Is(r.Err(), ErrStoreFull) || !strings.Contains(r.Err().Error(), dir) {
		t.Fatalf("want ErrStoreFull naming %s, got %v", dir, r.Err())
	}
	if b, err := Get(ctx, keep); err != nil || crc32.ChecksumIEEE(b) != crc32.ChecksumIEEE(pattern.Bytes(10<<20, 2)) {
		t.Fatalf("kept object: %v", err)
	}
}
