package core

import (
	"context"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// maxListedObjects bounds an owner's answer to MListObjects.
const maxListedObjects = 10000

// serveListObjects answers MListObjects with the objects this process
// owns: size, where the value is, and how many references hold it.
func (ot *objectTable) serveListObjects(context.Context, *pb.Empty) (*pb.ObjectList, error) {
	out := &pb.ObjectList{}
	ot.mu.Lock()
	for oid, o := range ot.byID {
		if !o.owned || o.state != stateReady || o.loc == nil {
			continue
		}
		rec := &pb.ObjectRecord{
			ObjectId: oid[:], OwnerAddr: ot.rt.addr, JobId: ot.rt.cfg.Job, Sealed: true,
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
	ot.mu.Unlock()
	return out, nil
}
