package rayo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// ErrNoAutoscaler is RequestResources in a program whose cluster is the
// embedded one: it has one node and nothing to add nodes to it.
var ErrNoAutoscaler = errors.New("rayo: RequestResources needs a cluster started with an autoscaler (rayo start --head --autoscaler ...); this program runs an embedded single-node cluster")

// RequestResources asks the cluster's autoscaler, as Ray's
// request_resources does, to keep room for these bundles at once: it
// scales up until the nodes' total resources (busy or not) can hold them
// all, before any task asks, and keeps those nodes however long they
// idle. The request stands until the next call replaces it; a call with
// no bundles withdraws it. Every bundle needs at least one positive
// quantity and none negative. It applies to a cluster joined by address
// (rayo start --head --autoscaler ...), not to the embedded one
// (ErrNoAutoscaler); without an autoscaler the request is kept and
// nothing acts on it.
func RequestResources(ctx context.Context, bundles []Bundle) error {
	cluster.Lock()
	rt, emb, addr, token := cluster.rt, cluster.embedded, cluster.gcsAddr, cluster.token
	cluster.Unlock()
	if rt == nil {
		return ErrNotInitialized
	}
	demands := make([]*pb.ResourceDemand, 0, len(bundles))
	for i, b := range bundles {
		d, err := bundleDemand(b)
		if err != nil {
			return fmt.Errorf("rayo: RequestResources: bundle %d: %w", i, err)
		}
		demands = append(demands, d)
	}
	if emb != nil {
		return ErrNoAutoscaler
	}
	s := autoscaler.NewRPCStore(addr, token)
	defer s.Close()
	if err := s.KVPut(ctx, autoscaler.Namespace, autoscaler.KeyRequested, autoscaler.EncodeDemands(demands)); err != nil {
		return fmt.Errorf("rayo: RequestResources: %w", err)
	}
	return nil
}

// bundleDemand is one bundle as a demand of count 1.
func bundleDemand(b Bundle) (*pb.ResourceDemand, error) {
	names := make([]string, 0, len(b))
	positive := false
	for k, v := range b {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("resource %s is %g: want a finite quantity of 0 or more", k, v)
		}
		positive = positive || v > 0
		names = append(names, k)
	}
	if !positive {
		return nil, errors.New("asks for nothing: want at least one positive quantity, such as {\"CPU\": 1}")
	}
	sort.Strings(names)
	d := &pb.ResourceDemand{Count: 1}
	for _, k := range names {
		d.Shape = append(d.Shape, &pb.Resource{Name: k, Quantity: b[k]})
	}
	return d, nil
}
