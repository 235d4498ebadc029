package dashboard

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// countingSource counts the state queries made of a fakeSource.
type countingSource struct {
	*fakeSource
	queries atomic.Int32
}

func (c *countingSource) Tasks(ctx context.Context, q *pb.StateQuery) (*pb.StateList, error) {
	c.queries.Add(1)
	return c.fakeSource.Tasks(ctx, q)
}

func (c *countingSource) Actors(ctx context.Context, q *pb.StateQuery) (*pb.StateList, error) {
	c.queries.Add(1)
	return c.fakeSource.Actors(ctx, q)
}

// The API server asks the cluster for its tasks and actors when scraped,
// not when it is made: its collector describes itself without collecting
// (a collection at New made every rayo.Init wait for one).
func TestStateMetricsCollectedOnlyWhenScraped(t *testing.T) {
	src := &countingSource{fakeSource: newFake()}
	s := New(Config{Source: src})
	if n := src.queries.Load(); n != 0 {
		t.Fatalf("New queried the cluster %d times", n)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "rayo_tasks{") {
		t.Fatalf("/metrics: %d\n%s", rec.Code, rec.Body.String())
	}
	if src.queries.Load() == 0 {
		t.Fatal("a scrape did not query the cluster")
	}
}
