package objstore

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/hostres"
)

// TestStoreIsNotBoundedByDevShm: a container's /dev/shm is 64 MiB, and
// the store, a memfd, must neither be sized by it nor fail past it. The
// test gives its own thread a mount namespace with a 16 MiB /dev/shm,
// then sizes a store and fills 64 MiB of one there.
func TestStoreIsNotBoundedByDevShm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small /dev/shm needs root")
	}
	type result struct {
		size   int64
		source string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		// The thread ends with this goroutine (never unlocked), taking
		// its mount namespace with it.
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNS); r.err != nil {
			return
		}
		if r.err = unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); r.err != nil {
			return
		}
		if r.err = unix.Mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=16m"); r.err != nil {
			return
		}
		r.size, r.source = DefaultSizing()
		a, err := CreateAnonArena("sizing-test", 64<<20)
		if err != nil {
			r.err = err
			return
		}
		defer a.Close()
		b, err := a.Slice(0, 64<<20)
		if err != nil {
			r.err = err
			return
		}
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("with a 16 MiB /dev/shm: %v", r.err)
	}
	mem, err := hostres.ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	want := (mem.Total / 10 * 3) &^ 4095
	if want < 64<<20 {
		want = 64 << 20
	}
	if r.size != want || strings.Contains(r.source, "/dev/shm") {
		t.Errorf("default store %d (%s) with a 16 MiB /dev/shm, want 30%% of %d: %d", r.size, r.source, mem.Total, want)
	}
}
