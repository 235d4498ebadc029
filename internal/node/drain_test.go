package node

import (
	"errors"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// TestFindNode: a node is named by its hex ID or a unique prefix; an empty,
// non-hexadecimal, unknown or ambiguous one is refused.
func TestFindNode(t *testing.T) {
	nodes := []*pb.NodeInfo{{NodeId: []byte{0xab, 0xcd, 0x01}}, {NodeId: []byte{0xab, 0xce, 0x02}}}
	if n, err := FindNode(nodes, "ABCD"); err != nil || n != nodes[0] {
		t.Fatalf("prefix abcd: %v %v", n, err)
	}
	if n, err := FindNode(nodes, "abce02"); err != nil || n != nodes[1] {
		t.Fatalf("whole ID: %v %v", n, err)
	}
	for id, want := range map[string]string{
		"":     "give a node ID",
		"xyz":  "not a hexadecimal node ID",
		"ff":   "no node's ID starts with ff",
		"abc":  "2 nodes' IDs start with abc",
		" ab ": "2 nodes' IDs start with ab",
	} {
		_, err := FindNode(nodes, id)
		if !errors.Is(err, ErrNoSuchNode) || !strings.Contains(err.Error(), want) {
			t.Errorf("FindNode(%q): %v, want %q", id, err, want)
		}
	}
}
