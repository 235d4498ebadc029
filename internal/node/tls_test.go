package node

import (
	"errors"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/pki"
)

// TestJoinTokenSecretLength: a join token's secret is held to the length
// of a token, whatever the length of the fingerprint around it.
func TestJoinTokenSecretLength(t *testing.T) {
	ca, err := pki.NewCA("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckToken(pki.JoinToken(ca.Cert, "short")); err == nil || !strings.Contains(err.Error(), "5 characters") {
		t.Fatalf("a join token with a 5-character secret: %v", err)
	}
	if err := CheckToken(pki.JoinToken(ca.Cert, NewToken())); err != nil {
		t.Fatalf("a join token with a good secret: %v", err)
	}
}

// TestJoinWithoutPin: a node joining over TLS with a plain secret, and no
// head's CA in its state folder, is refused before it dials.
func TestJoinWithoutPin(t *testing.T) {
	_, err := Start(t.Context(), Config{Address: "127.0.0.1:1", Token: NewToken(), NumCPUs: 1, StateDir: t.TempDir(), TLS: true})
	if !errors.Is(err, ErrNoPin) {
		t.Fatalf("joining without a pinned CA: %v, want ErrNoPin", err)
	}
}
