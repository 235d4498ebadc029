package raylet

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// A raylet refuses leases to owners on nodes the cluster view has DEAD;
// fenced, it fails what waits, refuses everything new and kills its
// workers.
func TestFence(t *testing.T) {
	r, _ := shellNode(t, "exec sleep 60")
	var pids []int
	deadline := time.Now().Add(10 * time.Second)
	for pids = r.WorkerPIDs(); len(pids) == 0; pids = r.WorkerPIDs() {
		if time.Now().After(deadline) {
			t.Fatal("no worker started")
		}
		time.Sleep(10 * time.Millisecond) // polling the worker pool
	}

	dead, live := ids.NewNodeID(), ids.NewNodeID()
	r.SetClusterView(&pb.ClusterView{Nodes: []*pb.NodeInfo{
		{NodeId: dead[:], Address: "10.0.0.9:1", State: "DEAD", DeathReason: "no heartbeat for 5s"},
		{NodeId: live[:], Address: "10.0.0.8:1", State: "ALIVE"},
	}})
	lease := func(owner string, res float64) chan error {
		got := make(chan error, 1)
		r.RequestLease(&pb.RequestLease{OwnerAddr: owner, Resources: []*pb.Resource{{Name: "CPU", Quantity: res}}}, func(lr *pb.LeaseReply, err error) {
			if err == nil && lr != nil && lr.Error != "" {
				err = errors.New(lr.Error)
			}
			got <- err
		})
		return got
	}
	err := <-lease(rpc.Endpoint("/x.sock", "10.0.0.9:2", dead.Name()), 1)
	if !errors.Is(err, ErrOwnerNodeDead) || !strings.Contains(err.Error(), dead.Name()) || !strings.Contains(err.Error(), "no heartbeat for 5s") {
		t.Fatalf("lease for an owner on a dead node: %v", err)
	}
	// One that waits (these workers never register, so nothing is
	// granted): the fencing fails it, where a grant would have no error.
	waiting := lease(rpc.Endpoint("/y.sock", "10.0.0.8:2", live.Name()), 1)

	r.Fence("no heartbeat for 5s")
	select {
	case err := <-waiting:
		if !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), r.NodeName()) {
			t.Fatalf("waiting lease at fencing: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting lease was not failed by the fencing")
	}
	if err := <-lease("", 1); !errors.Is(err, ErrFenced) {
		t.Fatalf("lease after fencing: %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d still runs after the fencing", pid)
			}
			time.Sleep(10 * time.Millisecond) // polling another process
		}
	}
	r.Fence("again") // idempotent
}
