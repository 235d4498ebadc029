package raylet

import (
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func TestStartFailsClearlyWithoutWorkerBinary(t *testing.T) {
	_, err := Start(Config{
		SessionDir:    t.TempDir(),
		NumCPUs:       1,
		StoreCapacity: 1 << 20,
		WorkerExe:     "/nonexistent/rayo-worker",
	})
	if err == nil || !strings.Contains(err.Error(), "start worker") {
		t.Fatalf("want a start-worker error, got %v", err)
	}
}

func TestInfeasibleLeaseAnsweredAtOnce(t *testing.T) {
	// A worker binary that exits at once is enough: the request must be
	// refused before any worker is involved.
	r, err := Start(Config{SessionDir: t.TempDir(), NumCPUs: 1, StoreCapacity: 1 << 20, WorkerExe: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make(chan *pb.LeaseReply, 1)
	r.RequestLease(&pb.RequestLease{Resources: []*pb.Resource{{Name: "GPU", Quantity: 1}}}, func(lr *pb.LeaseReply, err error) {
		if err != nil {
			t.Error(err)
		}
		got <- lr
	})
	lr := <-got
	if lr == nil || !strings.Contains(lr.Error, "GPU") {
		t.Fatalf("want an infeasible reply naming GPU, got %v", lr)
	}
}
