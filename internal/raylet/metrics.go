package raylet

import (
	"github.com/rayo-dev/rayo/internal/metrics"
)

// newMetrics makes the node's Prometheus metrics, read from the raylet at
// each scrape.
func (r *Raylet) newMetrics() {
	r.metrics = metrics.NewNode(r.cfg.NodeName, metrics.NodeSource{
		Store: func() (int64, int64, int64) {
			return r.store.Used(), r.store.Capacity(), int64(r.store.Len())
		},
		Workers: r.workerCounts,
		Resources: func() (map[string]float64, map[string]float64) {
			r.mu.Lock()
			defer r.mu.Unlock()
			total := make(map[string]float64, len(r.total))
			avail := make(map[string]float64, len(r.avail))
			for k, v := range r.total {
				total[k] = v
			}
			for k, v := range r.avail {
				avail[k] = v
			}
			return total, avail
		},
		Spill: func() metrics.Spill {
			st := r.SpillStats()
			return metrics.Spill{
				Objects: int64(st.Objects), Bytes: st.LiveBytes,
				SpilledObjects: st.SpilledObjects, SpilledBytes: st.SpilledBytes,
				RestoredObjects: st.RestoredObjects, RestoredBytes: st.RestoredBytes,
			}
		},
	})
}

// serveMetrics serves the metrics on cfg.MetricsAddr, if set.
func (r *Raylet) serveMetrics() error {
	if r.cfg.MetricsAddr == "" {
		return nil
	}
	srv, err := metrics.Serve(r.cfg.MetricsAddr, r.metrics.Registry)
	if err != nil {
		return err
	}
	r.metricsSrv = srv
	return nil
}

// workerCounts counts the worker processes by state.
func (r *Raylet) workerCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{"STARTING": r.starting}
	for _, w := range r.workers {
		switch {
		case w.dead:
		case w.lease == nil:
			out["IDLE"]++
		case w.lease.dedicated:
			out["ACTOR"]++
		default:
			out["LEASED"]++
		}
	}
	return out
}

// Metrics is the node's Prometheus metrics.
func (r *Raylet) Metrics() *metrics.Node { return r.metrics }

// MetricsAddr is where the node serves /metrics (HOST:PORT), or "".
func (r *Raylet) MetricsAddr() string {
	if r.metricsSrv == nil {
		return ""
	}
	return r.metricsSrv.Addr()
}
