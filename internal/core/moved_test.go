package core

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// A drained node tells the owner its objects moved: the owner's locator
// points to the new node, objects it does not hold there are listed back,
// and a borrower whose copy (at the old node) is lost gets the moved one
// from the owner, though a Put object has no lineage to be made again.
func TestObjectsMovedUpdatesTheOwner(t *testing.T) {
	owner, rl := storeRuntime(t, nil)
	borrower := newTestRuntime(t, rl, Config{Arena: rl.arena, NodeAddr: "n1"})
	ctx := testCtx(t)
	big := bytes.Repeat([]byte{9}, InlineLimit+1)
	h, err := owner.Put(ctx, value(string(big)), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := borrower.HandleFor(h.ID, owner.Addr())
	stale, err := borrower.Get(ctx, b) // the borrower's copy of the locator: n1
	if err != nil || stale.NodeAddr != "n1" {
		t.Fatalf("borrower's Get = %v, %v", stale, err)
	}

	c, err := rpc.Dial(ctx, owner.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other := ids.ForPut()
	gone := &pb.ObjectIDs{}
	if err := c.Call(ctx, rpc.MObjectsMoved, &pb.ObjectsMoved{Ids: [][]byte{h.ID[:], other[:]}, From: "n1", To: "n2"}, gone); err != nil {
		t.Fatal(err)
	}
	if len(gone.Ids) != 1 || !bytes.Equal(gone.Ids[0], other[:]) {
		t.Fatalf("the owner says it does not hold %x, want only the unknown object", gone.Ids)
	}
	loc, err := owner.Get(ctx, h)
	if err != nil || loc.NodeAddr != "n2" || !loc.InStore || loc.Size != int64(len(big)) {
		t.Fatalf("owner's locator after the move = %v, %v; want in store at n2", loc, err)
	}
	// Told again, from a node that no longer has it: not held there.
	if err := c.Call(ctx, rpc.MObjectsMoved, &pb.ObjectsMoved{Ids: [][]byte{h.ID[:]}, From: "n1", To: "n3"}, gone); err != nil || len(gone.Ids) != 1 {
		t.Fatalf("a second move from n1 = %v, %v; want the object listed back", gone.Ids, err)
	}

	// The borrower's copy at n1 is gone; the owner answers with n2's.
	rl.mu.Lock()
	rl.lost[h.ID] = 1
	rl.mu.Unlock()
	data, release, err := borrower.Bytes(ctx, b.ID, b.Owner, stale)
	if err != nil || !bytes.Equal(data, big) {
		t.Fatalf("borrower's Bytes after the move = %d bytes, %v; want the moved copy", len(data), err)
	}
	release()
}

// Bad ObjectsMoved requests are refused with clear errors: no node, a
// malformed ID, and, over TCP, another job's credential.
func TestObjectsMovedBadRequests(t *testing.T) {
	const secret = "cluster-secret-for-test"
	rt := newTestRuntime(t, newFakeRaylet(nil), Config{ListenTCP: "127.0.0.1:0", Token: pki.JobCredential(secret, "job-a"),
		JobKey: pki.JobKey(secret), Node: "n1"})
	ctx := testCtx(t)
	unix, tcp, _ := rpc.SplitEndpoint(rt.Addr())
	c, err := rpc.Dial(ctx, unix, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := ids.ForPut()
	for _, tc := range []struct {
		name string
		req  *pb.ObjectsMoved
		want string
	}{
		{"no source", &pb.ObjectsMoved{Ids: [][]byte{id[:]}, To: "n2"}, "both nodes are needed"},
		{"no target", &pb.ObjectsMoved{Ids: [][]byte{id[:]}, From: "n1"}, "both nodes are needed"},
		{"malformed id", &pb.ObjectsMoved{Ids: [][]byte{[]byte("short")}, From: "n1", To: "n2"}, "identifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Call(ctx, rpc.MObjectsMoved, tc.req, &pb.ObjectIDs{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ObjectsMoved = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		job  string
		fail bool
	}{{"job-b", true}, {"job-a", false}} {
		oc, err := rpc.DialToken(ctx, "tcp:"+tcp, pki.JobCredential(secret, tc.job), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = oc.Call(ctx, rpc.MObjectsMoved, &pb.ObjectsMoved{Ids: [][]byte{id[:]}, From: "n1", To: "n2"}, &pb.ObjectIDs{})
		_ = oc.Close()
		if tc.fail != (err != nil) || (tc.fail && !strings.Contains(err.Error(), "job-b")) {
			t.Fatalf("ObjectsMoved with %s's credential = %v, want refused: %v", tc.job, err, tc.fail)
		}
	}
}
