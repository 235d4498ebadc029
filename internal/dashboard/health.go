package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// healthTimeout bounds a health check's question to the control store:
// probes (Kubernetes' readiness and liveness) have timeouts of their own,
// 1 s by default.
const healthTimeout = 900 * time.Millisecond

// healthz serves GET /api/v0/healthz: 200 with the count of live nodes
// when the control store answers, else 503 with the cause. It is what a
// readiness or liveness probe of the head asks.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	nodes, err := s.cfg.Source.Nodes(ctx)
	if err != nil {
		fail(w, http.StatusServiceUnavailable, fmt.Errorf("the control store does not answer: %w", err))
		return
	}
	alive := 0
	for _, n := range nodes {
		if n.State == "ALIVE" {
			alive++
		}
	}
	reply(w, map[string]any{"status": "ok", "alive_nodes": alive})
}
