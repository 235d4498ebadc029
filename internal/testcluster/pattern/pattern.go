// Package pattern makes the payloads tests and their driver programs put
// and check: bytes that differ with a seed and along the slice, so
// that a copy that is misplaced, cut short or stale does not pass.
package pattern

import (
	"encoding/binary"
	mrand "math/rand/v2"
)

// Bytes is n bytes that differ with seed and along the slice: a random
// 64 KiB block, repeated, each copy stamped with its position (cheap under
// the race detector, which instruments loops over bytes).
func Bytes(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	block := make([]byte, 64<<10)
	_, _ = mrand.NewChaCha8(key).Read(block)
	b := make([]byte, n)
	for off := 0; off < n; off += len(block) {
		if m := copy(b[off:], block); m >= 8 {
			binary.LittleEndian.PutUint64(b[off:], uint64(off))
		}
	}
	return b
}
