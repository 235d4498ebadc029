package raylet

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// putPrimary makes a primary object as a process of the node does:
// created (waiting for room while objects spill), written, sealed.
func putPrimary(tb testing.TB, r *Raylet, size int64, seed byte) ids.ObjectID {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := ids.ForPut()
	off, err := r.CreateObject(ctx, id, size, "")
	if err != nil {
		tb.Fatal(err)
	}
	b, err := r.arena.Slice(off, size)
	if err != nil {
		tb.Fatal(err)
	}
	fill(b, seed)
	r.SealObjects([]ids.ObjectID{id})
	return id
}

// waitSpilled waits until id has left r's memory for its spill folder
// (the spill pass runs on its own goroutine).
func waitSpilled(tb testing.TB, r *Raylet, id ids.ObjectID) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, inMem := r.store.Lookup(id); !inMem {
			if _, ok := r.spill.disk.Has(id); ok {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("object %s did not spill: %+v", id, r.SpillStats())
		}
		time.Sleep(5 * time.Millisecond) // polling the pass's outcome
	}
}

// checkPinned reads an object as a process of the node does: pinned (restored
// if it was spilled), compared, unpinned.
func checkPinned(tb testing.TB, r *Raylet, id ids.ObjectID, size int64, seed byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	off, err := r.PinObject(ctx, id)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.UnpinObjects([]ids.ObjectID{id})
	b, err := r.arena.View(off, size)
	if err != nil {
		tb.Fatal(err)
	}
	want := make([]byte, size)
	fill(want, seed)
	if !bytes.Equal(b, want) {
		tb.Fatalf("object %s read back wrong", id)
	}
}

func TestSpillAndRestore(t *testing.T) {
	r := startNode(t, 64<<20, "")
	const n, size = 16, 8 << 20
	var list []ids.ObjectID
	for i := range n {
		list = append(list, putPrimary(t, r, size, byte(i)))
	}
	if sp := r.SpillStats(); sp.Objects == 0 || r.store.Used() > r.store.Capacity() {
		t.Fatalf("128 MiB in a 64 MiB store: %d spilled, store %+v", sp.Objects, r.store.Stats())
	}
	for i, id := range list {
		checkPinned(t, r, id, size, byte(i))
	}
	if sp := r.SpillStats(); sp.RestoredObjects == 0 {
		t.Fatalf("nothing restored: %+v", sp)
	}
	// A pinned object does not spill: with one pinned, the others make room.
	off, err := r.PinObject(context.Background(), list[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		putPrimary(t, r, size, byte(100+i))
	}
	if o, _, ok := r.store.Lookup(list[0]); !ok || o != off {
		t.Fatal("a pinned object moved or left memory")
	}
	r.UnpinObjects([]ids.ObjectID{list[0]})
	// Freed, their memory and disk space come back.
	r.FreeObjects(list)
	for _, o := range r.listObjects().Objects {
		id, _ := ids.ObjectIDFrom(o.ObjectId)
		r.FreeObjects([]ids.ObjectID{id})
	}
	// A spill pass that was writing a freed object deletes its file when
	// the write ends, on the spiller's goroutine.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, sp := r.store.Stats(), r.SpillStats()
		if st.Used == 0 && sp.Objects == 0 && sp.Files == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after freeing everything: store %+v, spilled %+v", st, sp)
		}
	}
}

// TestStoreFullWhenPinned: a create that needs room only pinned objects
// hold fails at once with ErrFull, saying so.
func TestStoreFullWhenPinned(t *testing.T) {
	r := startNode(t, 16<<20, "")
	id := putPrimary(t, r, 10<<20, 1)
	if _, err := r.PinObject(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	_, err := r.CreateObject(context.Background(), ids.ForPut(), 10<<20, "")
	if !errors.Is(err, objstore.ErrFull) {
		t.Fatalf("want ErrFull, got %v", err)
	}
	r.UnpinObjects([]ids.ObjectID{id})
	putPrimary(t, r, 10<<20, 2) // the first spills now
	checkPinned(t, r, id, 10<<20, 1)
}

// TestPullStreamsSpilledObject: another node pulls an object spilled
// here straight from disk.
func TestPullStreamsSpilledObject(t *testing.T) {
	a, b := startNode(t, 32<<20, "secret"), startNode(t, 64<<20, "secret")
	const size = 12 << 20
	first := putPrimary(t, a, size, 7)
	putPrimary(t, a, size, 8)
	putPrimary(t, a, size, 9) // past 80%: the first spills
	waitSpilled(t, a, first)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	off, err := b.Pull(ctx, first, a.TCPAddr(), size)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := b.arena.View(off, size)
	want := make([]byte, size)
	fill(want, 7)
	if !bytes.Equal(got, want) {
		t.Fatal("pulled copy of a spilled object differs")
	}
	if _, ok := a.spill.disk.Has(first); !ok {
		t.Fatal("the pull restored the object on its node instead of streaming it")
	}
}

// TestPinGivenUpWhileRestoring: a process that gives up a pin (its
// context ended) while the object is being restored for it does not
// leave it pinned.
func TestPinGivenUpWhileRestoring(t *testing.T) {
	r := startNode(t, 32<<20, "")
	const size = 12 << 20
	first := putPrimary(t, r, size, 1)
	putPrimary(t, r, size, 2)
	putPrimary(t, r, size, 3) // past 80%: the first spills
	waitSpilled(t, r, first)
	deadline := time.Now().Add(10 * time.Second)
	conn, err := rpc.Dial(context.Background(), r.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The pin and, at once, the unpin of a process that gave up: the
	// frames arrive in that order, the restore finishes after both.
	replied := make(chan error, 1)
	conn.Go(rpc.MPinObject, &pb.CreateObject{ObjectId: first[:]}, func(_ []byte, err error) { replied <- err })
	(&rayletclient.Client{Conn: conn}).UnpinObjects([]ids.ObjectID{first})
	for {
		_, _, inMem := r.store.Lookup(first)
		r.spill.mu.Lock()
		pinned, waiting := r.spill.pins[first], len(r.spill.waiting)
		r.spill.mu.Unlock()
		if inMem && pinned == 0 && waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a pin given up: in memory %v, pinned %d, pins being served %d", inMem, pinned, waiting)
		}
		time.Sleep(5 * time.Millisecond) // the restore runs on its own goroutine
	}
	select {
	case err := <-replied:
		t.Fatalf("a pin given up was answered: %v", err)
	default:
	}
}
