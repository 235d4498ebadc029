package dashboard

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestHealthz(t *testing.T) {
	f := newFake()
	s := New(Config{Source: f})
	var ok struct {
		Status     string `json:"status"`
		AliveNodes int    `json:"alive_nodes"`
	}
	alive := 0
	for _, n := range f.nodes {
		if n.State == "ALIVE" {
			alive++
		}
	}
	if code := get(t, s, "/api/v0/healthz", &ok); code != http.StatusOK || ok.Status != "ok" || ok.AliveNodes != alive {
		t.Errorf("healthy: %d %+v, want 200 ok with %d alive nodes", code, ok, alive)
	}

	f.err = fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", ErrUnreachable)
	var e apiErr
	if code := get(t, s, "/api/v0/healthz", &e); code != http.StatusServiceUnavailable || !strings.Contains(e.Error, "connection refused") {
		t.Errorf("control store away: %d %q, want 503 with the cause", code, e.Error)
	}
}
