package raylet

import (
	"context"
	"errors"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// Object transfer between nodes. (Placeholder: being written.)

// Pull copies an object of size bytes from the raylet at from (a TCP
// address) into this node's store, and returns its offset here.
func (r *Raylet) Pull(ctx context.Context, id ids.ObjectID, from string, size int64) (int64, error) {
	return 0, errors.New("raylet: pull: not yet")
}

func (r *Raylet) servePull(c *rpc.Conn, id uint64, body []byte) {
	_ = c.ReplyError(id, "raylet: pull: not yet")
}

func (r *Raylet) serveReadChunk(c *rpc.Conn, id uint64, body []byte) {
	_ = c.ReplyError(id, "raylet: read chunk: not yet")
}

func (r *Raylet) forwardFree(list []ids.ObjectID) {}
