package objstore

import (
	"fmt"

	"github.com/rayo-dev/rayo/internal/ids"
)

// ExistingError is the answer to a create of an object that is already
// sealed in the store: a task run again (a retry, or a rebuild from
// lineage) whose result is there from an earlier attempt or as a copy
// pulled from another node. The copy there is the result: the creator
// uses it as its own and writes nothing. It matches ErrExists.
type ExistingError struct {
	ID     ids.ObjectID
	Offset int64 // where the sealed copy is in the arena
	Size   int64 // its size
}

func (e *ExistingError) Error() string {
	return fmt.Sprintf("%v: %s is sealed at offset %d (%d bytes)", ErrExists, e.ID, e.Offset, e.Size)
}

// Unwrap makes an ExistingError match ErrExists.
func (e *ExistingError) Unwrap() error { return ErrExists }
