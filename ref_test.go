package rayo

import (
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/rayo-dev/rayo/internal/core"
)

// TestRefWireFormat checks that the hand-written encoding of a Ref is
// valid CBOR that the library reads the same way, for owner addresses of
// every length class.
func TestRefWireFormat(t *testing.T) {
	r := Put(ctxT(t), 1)
	for _, owner := range []string{"", "short", strings.Repeat("o", 23), strings.Repeat("p", 24), strings.Repeat("q", 300)} {
		h := &core.Handle{ID: r.h.ID, Owner: owner}
		ref := Ref[int]{h: h}
		b, err := ref.MarshalCBOR()
		if err != nil {
			t.Fatal(err)
		}
		var tag cbor.RawTag
		if err := cbor.Unmarshal(b, &tag); err != nil || tag.Number != refTag {
			t.Fatalf("owner %d bytes: library reads %v, %v", len(owner), tag.Number, err)
		}
		var w wireRef
		if err := cbor.Unmarshal(tag.Content, &w); err != nil || w.Owner != owner || string(w.ID) != string(h.ID[:]) {
			t.Fatalf("owner %d bytes: content %+v, %v", len(owner), w, err)
		}
		id, got, ok := parseRef(b)
		if !ok || id != h.ID || got != owner {
			t.Fatalf("owner %d bytes: fast path %v %q %v", len(owner), id, got, ok)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	f.Add([]byte{0xd9, 0x6d, 0x39, 0x82, 0x54})
	f.Add(append(append([]byte{0xd9, 0x6d, 0x39, 0x82, 0x54}, make([]byte, 20)...), 0x61, 'a'))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = parseRef(b) // must not panic
	})
}
