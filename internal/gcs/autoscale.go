package gcs

import (
	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// view is the cluster's view as nodes get it: the node table, the ended
// jobs and, with autoscaling on, the node shapes the autoscaler can add
// (which it keeps in the KV).
func (s *Server) view() *pb.ClusterView {
	v := &pb.ClusterView{Nodes: s.Nodes(), EndedJobs: s.endedJobs()}
	s.mu.Lock()
	b, ok := s.kv[kvKey{autoscaler.Namespace, autoscaler.KeyLaunchable}]
	s.mu.Unlock()
	if ok {
		v.Launchable, _ = autoscaler.DecodeDemands(b) // the autoscaler wrote it; a bad value is no shape
	}
	return v
}
