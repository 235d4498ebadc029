package raylet

import (
	"context"
	"errors"
	"fmt"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// localStore is the control store of a cluster of one node (an embedded
// cluster), kept in the raylet's process behind the Cluster interface that
// the remote one (package node) implements too: named actors, the table
// of tasks and actors, placement groups, and one job, that of the driver
// hosting the raylet.
type localStore struct {
	r      *Raylet
	names  *gcs.Names
	table  *tasktable.Table
	groups *placement.Manager
}

func newLocalStore(r *Raylet) *localStore {
	return &localStore{
		r:      r,
		names:  gcs.NewNames(),
		table:  tasktable.NewTable(r.cfg.MaxTasks, 0),
		groups: placement.NewManager(localGroups{r}, r.log, nil),
	}
}

func (s *localStore) close() { s.groups.Close() }

// StartJob has nothing to do: no other node runs the job's workers.
func (s *localStore) StartJob(context.Context, *pb.JobInfo) error { return nil }

// EndJob has nothing to do: the store ends with the driver's process.
func (s *localStore) EndJob(*pb.JobRequest) {}

// FetchJob knows no job but the driver's, which is this node's already.
func (s *localStore) FetchJob(_ context.Context, id string) (*pb.JobInfo, string, error) {
	return nil, "", fmt.Errorf("raylet: unknown job %q", id)
}

func (s *localStore) RegisterActorName(_ context.Context, a *pb.ActorName) error {
	return s.names.Register(a)
}

func (s *localStore) LookupActorName(_ context.Context, namespace, name string) (*pb.ActorName, error) {
	return s.names.Lookup(namespace, name)
}

func (s *localStore) ActorAlive(actorID []byte, workerAddr string) {
	s.names.SetWorker(actorID, workerAddr)
}

func (s *localStore) ActorGone(actorID []byte) { s.names.Remove(actorID) }

// ReportEvents keeps the events, of the driver's job when they name none.
func (s *localStore) ReportEvents(b *pb.StateEvents) {
	for _, e := range b.Tasks {
		if e.JobId == "" {
			e.JobId = s.r.cfg.EmbeddedJob
		}
	}
	for _, e := range b.Actors {
		if e.JobId == "" {
			e.JobId = s.r.cfg.EmbeddedJob
		}
	}
	s.table.Report(b)
}

func (s *localStore) ListState(_ context.Context, m rpc.Method, q *pb.StateQuery) (*pb.StateList, error) {
	if m == rpc.MListTasks {
		return s.table.Tasks(q), nil
	}
	return s.table.Actors(q), nil
}

// PlacementGroup serves the group requests, a new group joining the
// driver's job when it names none.
func (s *localStore) PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	if req.Op == placement.OpCreate && req.Group != nil && req.Group.JobId == "" {
		req.Group.JobId = s.r.cfg.EmbeddedJob
	}
	return s.groups.Handle(ctx, req), nil
}

// handleListing registers the nodes and jobs queries: an embedded
// cluster's raylet answers them (this node, the driver's job); in a
// cluster the control store does.
func (r *Raylet) handleListing(mx *rpc.Mux) {
	rpc.Handle(mx, rpc.ListNodes, func(context.Context, *pb.Empty) (*pb.NodeList, error) {
		if r.local == nil {
			return nil, errors.New("raylet: ask the control store for the nodes of a cluster")
		}
		return &pb.NodeList{Nodes: []*pb.NodeInfo{r.selfInfo()}}, nil
	})
	rpc.Handle(mx, rpc.ListJobs, func(context.Context, *pb.Empty) (*pb.JobList, error) {
		if r.local == nil {
			return nil, errors.New("raylet: ask the control store for the jobs of a cluster")
		}
		return &pb.JobList{Jobs: []*pb.JobInfo{r.embeddedJob()}}, nil
	})
}
