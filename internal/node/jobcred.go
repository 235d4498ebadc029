package node

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/rayo-dev/rayo/internal/pki"
)

// newJobCredential makes a job ID, as a driver would, and its credential
// in the cluster of token: what a submitted entrypoint gets as RAYO_TOKEN,
// whose driver then is that job (see pki.JobCredential). "" when the
// cluster has no token.
func newJobCredential(token string) string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	return pki.JobCredential(token, hex.EncodeToString(rnd[:]))
}
