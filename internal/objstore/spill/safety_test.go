package spill

import (
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
)

func TestOpenConfigErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no folder", Config{}},
		{"negative writers", Config{Dir: dir, Writers: -1}},
		{"negative file size", Config{Dir: dir, FileSize: -1}},
		{"threshold above 1", Config{Dir: dir, Threshold: 1.5}},
		{"negative threshold", Config{Dir: dir, Threshold: -0.1}},
		{"NaN threshold", Config{Dir: dir, Threshold: math.NaN()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Open(tc.cfg); !errors.Is(err, ErrConfig) {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("Open(%+v) = %v; want ErrConfig", tc.cfg, err)
			}
		})
	}
	if _, _, err := MeasureFloor(t.TempDir(), 0); !errors.Is(err, ErrConfig) {
		t.Errorf("MeasureFloor of 0 bytes = %v; want ErrConfig", err)
	}
}

func TestOpenRefusesUnsafeFolders(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(base, "dangling")
	if err := os.Symlink(filepath.Join(base, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(base, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	// A folder owned by someone else: as root, make one; as anyone else,
	// the root folder is one.
	theirs := "/"
	if os.Geteuid() == 0 {
		theirs = filepath.Join(base, "theirs")
		if err := os.Mkdir(theirs, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, dir string }{
		{"symlink", link},
		{"dangling symlink", dangling},
		{"not a directory", plain},
		{"writable by others", open},
		{"owned by another user", theirs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Config{Dir: tc.dir})
			if !errors.Is(err, ErrUnsafeDir) {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("Open(%s) = %v; want ErrUnsafeDir", tc.dir, err)
			}
		})
	}
}

func TestOpenMakesAPrivateFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "spill")
	s := open(t, Config{Dir: dir})
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Fatalf("folder mode %v; want a 0700 directory", fi.Mode())
	}
	objs, _ := randomObjects(20, 10)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	names := list(t, dir)
	if len(names) != 1 {
		t.Fatalf("files %v; want one", names)
	}
	fi, err = os.Lstat(filepath.Join(dir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Fatalf("spill file mode %v; want -rw-------", fi.Mode())
	}
	// One engine per folder.
	if s2, err := Open(Config{Dir: dir}); !errors.Is(err, ErrInUse) {
		if s2 != nil {
			_ = s2.Close()
		}
		t.Fatalf("second Open of a folder in use = %v; want ErrInUse", err)
	}
}

func TestOpenRemovesStaleFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, filePrefix+"999-000001")
	mine := filepath.Join(dir, "keep.txt")
	for _, p := range []string{stale, mine} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A stale-looking symlink is not followed and not removed; only regular
	// files are ours.
	if err := os.Symlink(mine, filepath.Join(dir, filePrefix+"link")); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale spill file still there: %v", err)
	}
	if _, err := os.Lstat(mine); err != nil {
		t.Errorf("someone else's file was removed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, filePrefix+"link")); err != nil {
		t.Errorf("a symlink was removed: %v", err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := filepath.Join(t.TempDir(), "spill")
	s, err := Open(Config{Dir: dir, FileSize: mib})
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := randomObjects(21, 10, 2*mib, 300*kib, 0)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if names := list(t, dir); len(names) != 0 {
		t.Fatalf("after Close the folder holds %v", names)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := s.Spill(context.Background(), objs[:1]); !errors.Is(err, ErrClosed) {
		t.Errorf("Spill after Close = %v; want ErrClosed", err)
	}
	if _, err := s.ReadAt(objs[0].ID, make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close = %v; want ErrClosed", err)
	}
	if err := s.Delete(objs[0].ID); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close = %v; want ErrClosed", err)
	}
	// The folder is free again.
	s2, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, before)
}

// waitGoroutines waits until no more goroutines run than before.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

func TestCloseStopsSpills(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := filepath.Join(t.TempDir(), "spill")
	s, err := Open(Config{Dir: dir, Writers: 1})
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := randomObjects(22, 40*mib, 40*mib, 40*mib)
	writing := make(chan struct{})
	var once sync.Once
	ctx := scriptedCtx{context.Background(), func() error {
		once.Do(func() { close(writing) })
		return nil
	}}
	errc := make(chan error, 1)
	go func() { errc <- s.Spill(ctx, objs) }()
	<-writing
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close stopped the call between two writes: it fails, and what it
	// wrote is gone with the folder's other files.
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Spill during Close = %v; want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Spill call in progress did not return after Close")
	}
	if names := list(t, dir); len(names) != 0 {
		t.Fatalf("after Close the folder holds %v", names)
	}
	waitGoroutines(t, before)
}

func TestDamagedFiles(t *testing.T) {
	s := open(t, Config{FileSize: mib})
	objs, sums := randomObjects(23, 100*kib, 200*kib, 2*mib)
	if err := s.Spill(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	fused := filepath.Join(s.Dir(), s.mu.objects[objs[0].ID].f.name)
	own := filepath.Join(s.Dir(), s.mu.objects[objs[2].ID].f.name)
	// A file someone removed stays readable while the store is open: it
	// holds each file open.
	if err := os.Remove(own); err != nil {
		t.Fatal(err)
	}
	readAll(t, s, objs[2].ID, mib, sums[objs[2].ID])
	if err := s.Delete(objs[2].ID); err != nil {
		t.Fatalf("Delete of an object whose file was removed: %v", err)
	}
	// A truncated file is reported, with the file's name.
	if err := os.Truncate(fused, 150*kib); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 200*kib)
	off := s.mu.objects[objs[1].ID].off
	n, err := s.ReadAt(objs[1].ID, p, 0)
	if want := 150*kib - int(off); !errors.Is(err, ErrCorrupt) || n != want {
		t.Fatalf("ReadAt of a truncated object (at %d in a 150 KiB file) = %d, %v; want %d, ErrCorrupt", off, n, err, want)
	}
	if !strings.Contains(err.Error(), fused) {
		t.Errorf("error %q does not name %s", err, fused)
	}
	n, err = s.ReadAt(objs[0].ID, p[:100*kib], 0)
	if err != nil || n != 100*kib {
		t.Fatalf("ReadAt of the intact object = %d, %v", n, err)
	}
	for _, o := range objs[:2] {
		if err := s.Delete(o.ID); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentSpillReadDelete(t *testing.T) {
	s := open(t, Config{FileSize: 2 * mib, Writers: 3})
	const workers, rounds = 4, 6
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				sizes := []int{0, 1, 5000, 64 * kib, 300 * kib, 1*mib + 17, 3 * mib}
				objs, sums := randomObjects(uint64(100+w*rounds+r), sizes...)
				if err := s.Spill(context.Background(), objs); err != nil {
					errc <- err
					return
				}
				scribble(objs)
				for _, o := range objs {
					readAll(t, s, o.ID, 256*kib, sums[o.ID])
				}
				// Delete an object while another goroutine reads it: the
				// read sees the object's bytes or ErrNotFound, never others.
				var rg sync.WaitGroup
				for _, o := range objs {
					rg.Add(1)
					go func(id ids.ObjectID, want [32]byte, size int) {
						defer rg.Done()
						p := make([]byte, size)
						n, err := s.ReadAt(id, p, 0)
						if errors.Is(err, ErrNotFound) {
							return
						}
						if err != nil || n != size {
							errc <- err
							return
						}
						if sha256.Sum256(p) != want {
							errc <- errors.New("a read racing a Delete saw other bytes")
						}
					}(o.ID, sums[o.ID], len(o.Data))
					if err := s.Delete(o.ID); err != nil {
						errc <- err
						return
					}
				}
				rg.Wait()
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if names := list(t, s.Dir()); len(names) != 0 {
		t.Fatalf("after deleting everything the folder holds %v", names)
	}
	if got := s.Stats(); got.Objects != 0 || got.Files != 0 || got.SpilledObjects != workers*rounds*7 {
		t.Fatalf("Stats = %+v", got)
	}
}

func TestMeasureFloor(t *testing.T) {
	dir := t.TempDir()
	w, r, err := MeasureFloor(dir, 8*mib+5)
	if err != nil {
		t.Fatal(err)
	}
	if w <= 0 || r <= 0 || math.IsInf(w, 0) || math.IsInf(r, 0) {
		t.Fatalf("MeasureFloor = %v GB/s write, %v GB/s read", w, r)
	}
	if names := list(t, dir); len(names) != 0 {
		t.Fatalf("MeasureFloor left %v", names)
	}
	if _, _, err := MeasureFloor(filepath.Join(dir, "missing"), mib); err == nil {
		t.Fatal("MeasureFloor in a missing folder did not fail")
	}
}
