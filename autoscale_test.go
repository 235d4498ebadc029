package rayo

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestRequestResourcesRefusesBadBundlesAndTheEmbeddedCluster(t *testing.T) {
	ctx := ctxT(t)
	for name, b := range map[string]Bundle{
		"negative": {"CPU": -1},
		"NaN":      {"CPU": math.NaN()},
		"infinite": {"GPU": math.Inf(1)},
		"empty":    {},
		"zeros":    {"CPU": 0},
	} {
		err := RequestResources(ctx, []Bundle{{"CPU": 1}, b})
		if err == nil || !strings.Contains(err.Error(), "bundle 1") || errors.Is(err, ErrNoAutoscaler) {
			t.Errorf("%s: RequestResources = %v, want an error naming bundle 1", name, err)
		}
	}
	// This test program's cluster is the embedded one: nothing can add
	// nodes to it, and the call says so rather than pretend.
	if err := RequestResources(ctx, []Bundle{{"CPU": 1}}); !errors.Is(err, ErrNoAutoscaler) {
		t.Fatalf("RequestResources on the embedded cluster = %v, want ErrNoAutoscaler", err)
	}
}
