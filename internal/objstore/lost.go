package objstore

import "errors"

// ErrObjectLost means the node that should hold an object no longer has
// it, or cannot be reached: the object must be made again (or fetched
// elsewhere). It crosses the raylet, its client and the owner's runtime,
// which answers it by rebuilding the object; rayo.ErrObjectLost is this
// value.
var ErrObjectLost = errors.New("rayo: object lost: the node that held it is gone")
