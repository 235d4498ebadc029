package core

import (
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// maxListedObjects bounds an owner's answer to MListObjects.
const maxListedObjects = 10000

// serveListObjects answers MListObjects with the objects this process
// owns: size, where the value is, and how many references hold it.
func (rt *Runtime) serveListObjects(c *rpc.Conn, id uint64) {
	out := &pb.ObjectList{}
	rt.objs.mu.Lock()
	for oid, o := range rt.objs.byID {
		if !o.owned || o.state != stateReady || o.loc == nil {
			continue
		}
		rec := &pb.ObjectRecord{
			ObjectId: oid[:], OwnerAddr: rt.addr, JobId: rt.cfg.Job, Sealed: true,
			RefCount: o.local + o.pins + o.borrowers, Kind: "INLINE", Size: int64(len(o.loc.Inline)),
		}
		if o.loc.InStore {
			rec.Kind, rec.Size = "IN_STORE", o.loc.Size
		}
		out.Objects = append(out.Objects, rec)
		if len(out.Objects) >= maxListedObjects {
			break
		}
	}
	rt.objs.mu.Unlock()
	_ = c.Reply(id, out)
}
