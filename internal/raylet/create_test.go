package raylet

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// dialClient is a process of r's node: a client on a socket of its own.
func dialClient(t *testing.T, r *Raylet) *rayletclient.Client {
	t.Helper()
	conn, err := rpc.Dial(context.Background(), r.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rayletclient.Client{Conn: conn}
}

// wantExisting checks that err says id is sealed at off with size bytes.
func wantExisting(t *testing.T, err error, id ids.ObjectID, off, size int64) {
	t.Helper()
	var there *objstore.ExistingError
	if !errors.As(err, &there) || !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("create of %s, sealed here: got %v, want an *objstore.ExistingError", id, err)
	}
	if there.ID != id || there.Offset != off || there.Size != size {
		t.Fatalf("create of %s: the copy there is %s at %d (%d bytes), want at %d (%d bytes)", id, there.ID, there.Offset, there.Size, off, size)
	}
}

// A task run again on a node whose store has its result sealed (its
// earlier attempt's) is answered with that copy, not "already exists".
func TestCreateOfASealedObjectIsTheCopyThere(t *testing.T) {
	r := startNode(t, 16<<20, "")
	id := putObject(t, r, 300<<10, 7)
	off, size, _ := r.store.Lookup(id)
	_, err := dialClient(t, r).CreateObject(context.Background(), id, 300<<10, "")
	wantExisting(t, err, id, off, size)
	if got := objectBytes(t, r, id); got[1] != byte(1%251)^7 {
		t.Fatal("the copy there was written over")
	}
}

// A rebuild that lands where a reader pulled a copy of the object takes
// that copy as its result, and the copy becomes a primary of the node:
// no longer a pulled copy, evicted when room is short.
func TestCreateOfAPulledCopyAdoptsIt(t *testing.T) {
	a := startNode(t, 16<<20, "t")
	b := startNode(t, 16<<20, "t")
	id := putObject(t, a, 1<<20, 3)
	off, err := b.Pull(context.Background(), id, a.TCPAddr(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !b.xfer.IsPulled(id) {
		t.Fatal("the copy is not a pulled one")
	}
	_, err = dialClient(t, b).CreateObject(context.Background(), id, 1<<20, "")
	wantExisting(t, err, id, off, 1<<20)
	if b.xfer.IsPulled(id) {
		t.Error("the copy the create took is still a pulled copy (evictable)")
	}
	b.spill.mu.Lock()
	primary := b.spill.elems[id] != nil
	b.spill.mu.Unlock()
	if !primary {
		t.Error("the adopted copy is not among the primaries that spill")
	}
}

// What a process created and never sealed goes when its connection
// closes (a worker that died half-way), and does not stand in the way
// of the next attempt's create.
func TestCreateLeftUnsealedGoesWithItsProcess(t *testing.T) {
	r := startNode(t, 16<<20, "")
	id := ids.ForPut()
	first := dialClient(t, r)
	if _, err := first.CreateObject(context.Background(), id, 1<<20, ""); err != nil {
		t.Fatal(err)
	}
	if !r.store.Unsealed(id) {
		t.Fatal("the create is not in the store")
	}
	_ = first.Conn.Close()
	waitUntil(t, "the unsealed create aborted", func() bool { return !r.store.Unsealed(id) })
	if _, _, ok := r.store.Lookup(id); ok {
		t.Fatal("the half-written object was sealed")
	}
	if _, err := dialClient(t, r).CreateObject(context.Background(), id, 1<<20, ""); err != nil {
		t.Fatalf("the next attempt's create: %v", err)
	}
}

// A create of an object another process is writing waits for its seal,
// then takes that copy.
func TestCreateWaitsForTheWriterToSeal(t *testing.T) {
	r := startNode(t, 16<<20, "")
	id := ids.ForPut()
	writer := dialClient(t, r)
	off, err := writer.CreateObject(context.Background(), id, 4096, "")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := dialClient(t, r).CreateObject(context.Background(), id, 4096, "")
		errs <- err
	}()
	// The second create waits (off the read loop) for a seal.
	waitUntil(t, "the second create waiting for a seal", func() bool {
		select {
		case err := <-errs:
			t.Fatalf("the second create did not wait for the seal: %v", err)
		default:
		}
		r.sealMu.Lock()
		defer r.sealMu.Unlock()
		return r.sealWake != nil
	})
	writer.SealObjects([]ids.ObjectID{id})
	wantExisting(t, <-errs, id, off, 4096)
}

// A process going away aborts only its own creates: an object it
// created, that was freed and created again by another, is the other's.
func TestCreateOfAnotherIsNotAbortedWithTheFirst(t *testing.T) {
	r := startNode(t, 16<<20, "")
	id := ids.ForPut()
	first, owner, second := dialClient(t, r), dialClient(t, r), dialClient(t, r)
	if _, err := first.CreateObject(context.Background(), id, 4096, ""); err != nil {
		t.Fatal(err)
	}
	owner.FreeObjects([]ids.ObjectID{id})
	waitUntil(t, "the free", func() bool { return !r.store.Unsealed(id) })
	if _, err := second.CreateObject(context.Background(), id, 4096, ""); err != nil {
		t.Fatal(err)
	}
	_ = first.Conn.Close()
	// A third process's create, left unsealed too, marks when the closes
	// are handled.
	third := dialClient(t, r)
	if _, err := third.CreateObject(context.Background(), ids.ForPut(), 64, ""); err != nil {
		t.Fatal(err)
	}
	_ = third.Conn.Close()
	waitUntil(t, "the third's create aborted", func() bool {
		r.creates.mu.Lock()
		defer r.creates.mu.Unlock()
		return len(r.creates.byConn) == 1 // only second's is left
	})
	if !r.store.Unsealed(id) {
		t.Fatal("the first process's close aborted the second's create")
	}
}

// A task run again on a node that spilled its result reads that copy
// back and takes it, rather than writing a second one beside the disk's.
func TestCreateOfASpilledObjectReadsItBack(t *testing.T) {
	r := startNode(t, 16<<20, "")
	const size = 6 << 20
	id := putPrimary(t, r, size, 5)
	putPrimary(t, r, size, 6)
	putPrimary(t, r, size, 7) // no room for three: the oldest spills
	waitSpilled(t, r, id)
	_, err := dialClient(t, r).CreateObject(context.Background(), id, size, "")
	var there *objstore.ExistingError
	if !errors.As(err, &there) || there.Size != size {
		t.Fatalf("create of a spilled object: got %v, want the copy read back", err)
	}
	b, err := r.arena.View(there.Offset, size)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	fill(want, 5)
	if !bytes.Equal(b, want) {
		t.Fatal("the copy read back is not the object")
	}
}
