package raylet

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// stubCluster is a control store that the placement paths tested here
// never call.
type stubCluster struct{ Cluster }

func cpus(n float64) []*pb.Resource { return []*pb.Resource{{Name: CPU, Quantity: n}} }

// TestRequestWaitsForALaunchableNode: with the autoscaler's node shapes in
// the view, a request no node fits but a shape does waits (and counts in
// the node's pending shapes) until a node that fits joins, then goes
// there; one no shape fits fails at once as infeasible.
func TestRequestWaitsForALaunchableNode(t *testing.T) {
	r, err := Start(Config{SessionDir: t.TempDir(), NumCPUs: 1, ListenTCP: "127.0.0.1:0", LogOutput: io.Discard, Cluster: stubCluster{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	self := &pb.NodeInfo{NodeId: r.nodeID[:], Address: r.TCPAddr(), State: "ALIVE", Resources: cpus(1), Available: cpus(1)}
	r.SetClusterView(&pb.ClusterView{Nodes: []*pb.NodeInfo{self}, Launchable: []*pb.ResourceDemand{{Shape: cpus(4), Count: 2}}})

	replies := make(chan *pb.LeaseReply, 2)
	r.RequestLease(&pb.RequestLease{Resources: cpus(8)}, func(rep *pb.LeaseReply, err error) { replies <- rep })
	select {
	case rep := <-replies:
		if !strings.Contains(rep.Error, "no node in the cluster can run it") {
			t.Fatalf("8 CPUs with 4-CPU node types: %+v, want infeasible", rep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request no node type fits did not fail")
	}

	r.RequestLease(&pb.RequestLease{Resources: cpus(3)}, func(rep *pb.LeaseReply, err error) { replies <- rep })
	shapes := r.PendingShapes()
	if len(shapes) != 1 || shapes[0].Count != 1 || ShapeKey(shapes[0].Shape) != "CPU=3" {
		t.Fatalf("pending shapes %v, want one CPU=3", shapes)
	}
	select {
	case rep := <-replies:
		t.Fatalf("a request a node type fits was answered before any node could take it: %+v", rep)
	default:
	}
	// A 4-CPU node joins: the request goes there.
	peerID := ids.NewNodeID()
	peer := &pb.NodeInfo{NodeId: peerID[:], Address: "127.0.0.1:1", State: "ALIVE", Resources: cpus(4), Available: cpus(4)}
	r.SetClusterView(&pb.ClusterView{Nodes: []*pb.NodeInfo{self, peer}, Launchable: []*pb.ResourceDemand{{Shape: cpus(4), Count: 2}}})
	select {
	case rep := <-replies:
		if rep.SpillTo != peer.Address {
			t.Fatalf("after a 4-CPU node joined: %+v, want a spill to it", rep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request did not go to the node that joined")
	}
	if shapes := r.PendingShapes(); len(shapes) != 0 {
		t.Fatalf("pending shapes %v after the request left", shapes)
	}
}
