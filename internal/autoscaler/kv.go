package autoscaler

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The autoscaler shares what others need to know through the control
// store's KV, in its own namespace: the control store publishes the
// launchable node shapes in every cluster view (so that raylets let a
// request wait for a node rather than fail as infeasible), drivers leave
// their standing resource requests there (rayo.RequestResources), and
// rayo status reads the autoscaler's view.
const (
	// Namespace is the KV namespace of the keys below.
	Namespace = "rayo.autoscaler"
	// KeyLaunchable holds the shapes of the nodes the autoscaler can add
	// (pb.ResourceDemands, one demand per node type, count its maximum).
	KeyLaunchable = "launchable"
	// KeyRequested holds the standing resource request (pb.ResourceDemands,
	// each bundle a demand of count 1).
	KeyRequested = "requested"
	// KeyStatus holds the autoscaler's view, as JSON (Status).
	KeyStatus = "status"
)

// DecodeDemands reads a KeyLaunchable or KeyRequested value; an empty
// value is no demand.
func DecodeDemands(b []byte) ([]*pb.ResourceDemand, error) {
	var d pb.ResourceDemands
	if err := proto.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("autoscaler: decode demands: %w", err)
	}
	return d.Demands, nil
}

// EncodeDemands is a KeyLaunchable or KeyRequested value.
func EncodeDemands(d []*pb.ResourceDemand) []byte {
	b, _ := proto.Marshal(&pb.ResourceDemands{Demands: d}) // a message of plain fields always encodes
	return b
}
