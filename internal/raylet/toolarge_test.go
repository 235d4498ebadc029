package raylet

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/objstore"
	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// An object larger than the whole store is refused as too large, whether
// created by a process of the node or pulled from a node with a larger
// store, and the client keeps that apart from a store that is only full.
func TestObjectLargerThanTheStoreIsTooLarge(t *testing.T) {
	a := startNode(t, 64<<20, "t")
	b := startNode(t, 16<<20, "t")
	const size = 20 << 20
	id := putObject(t, a, size, 3)
	ctx := context.Background()
	wantTooLarge := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, objstore.ErrTooLarge) || errors.Is(err, objstore.ErrFull) {
			t.Fatalf("%s: got %v, want objstore.ErrTooLarge only", what, err)
		}
		for _, w := range []string{"needs 20971520 bytes", "capacity is 16777216"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", what, err, w)
			}
		}
	}
	_, err := b.Pull(ctx, id, a.TCPAddr(), size)
	wantTooLarge("pull in the raylet", err)

	conn, err := rpc.Dial(ctx, b.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := &rayletclient.Client{Conn: conn}
	_, err = cl.PullObject(ctx, id, a.TCPAddr(), size)
	wantTooLarge("pull through the client", err)
	_, err = cl.CreateObject(ctx, ids.ForPut(), size, "")
	wantTooLarge("create through the client", err)

	// A store that is only full says so.
	keep := ids.ForPut()
	if _, err := cl.CreateObject(ctx, keep, 10<<20, ""); err != nil {
		t.Fatal(err)
	}
	_, err = cl.CreateObject(ctx, ids.ForPut(), 10<<20, "")
	if !errors.Is(err, objstore.ErrFull) || errors.Is(err, objstore.ErrTooLarge) {
		t.Fatalf("full store through the client: got %v, want objstore.ErrFull only", err)
	}
	if _, _, ok := b.store.Lookup(id); ok {
		t.Fatal("the refused pull left an object behind")
	}
}
