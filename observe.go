package rayo

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/stateapi"
)

// ClusterResources is what the cluster's alive nodes offer in all, by
// resource (Ray's ray.cluster_resources()).
func ClusterResources(ctx context.Context) (map[string]float64, error) {
	return sumResources(ctx, func(n Node) map[string]float64 { return n.Resources })
}

// AvailableResources is what the cluster's alive nodes have free, by
// resource, as they last reported it (Ray's ray.available_resources()).
func AvailableResources(ctx context.Context) (map[string]float64, error) {
	return sumResources(ctx, func(n Node) map[string]float64 { return n.Available })
}

func sumResources(ctx context.Context, of func(Node) map[string]float64) (map[string]float64, error) {
	nodes, err := Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, n := range nodes {
		if !n.Alive {
			continue
		}
		for k, v := range of(n) {
			out[k] += v
		}
	}
	return out, nil
}

// Timeline writes the execution of the tasks the cluster knows, as Chrome
// trace events that Perfetto and chrome://tracing open (Ray's
// ray.timeline()); jobID, when set, keeps one job's. It asks the
// cluster's API server (DashboardURL), and sees a task's events once its
// owner and worker have reported them (every 200 ms).
func Timeline(ctx context.Context, w io.Writer, jobID string) error {
	if current() == nil {
		return ErrNotInitialized
	}
	base := DashboardURL()
	if base == "" {
		return ErrNoDashboard
	}
	c, err := stateapi.New(base)
	if err != nil {
		return fmt.Errorf("rayo: timeline: %w", err)
	}
	// A joined driver's head may serve reads beyond loopback only to the
	// token's holders; the embedded cluster's API server has no token.
	cluster.Lock()
	c.Token = cluster.token
	cluster.Unlock()
	if rec, err := node.ReadCluster(node.StateDir()); err == nil && rec.TLSDir != "" {
		// A head beyond loopback serves HTTPS with the cluster's CA.
		if err := c.TrustCAFile(filepath.Join(rec.TLSDir, pki.CACertFile)); err != nil {
			return fmt.Errorf("rayo: timeline: %w", err)
		}
	}
	if err := c.Timeline(ctx, w, jobID); err != nil {
		return fmt.Errorf("rayo: timeline: %w", err)
	}
	return nil
}
