package raylet

import (
	"slices"
	"testing"
)

func TestWorkerEnvOfADaemonIsAnAllowList(t *testing.T) {
	daemon := []string{
		"PATH=/usr/bin", "HOME=/home/op", "LANG=C.UTF-8", "LC_ALL=C", "GOMAXPROCS=2",
		"RAYO_DEBUG=1", "RAYO_STATE_DIR=/var/lib/rayo",
		"RAYO_TOKEN=cluster-secret", "RAYO_REDIS_PASSWORD=redis-secret", "RAYO_TOKEN_FILE=/etc/rayo/token",
		"RAYO_TLS_CA_KEY=/etc/rayo/tls/ca.key",
		"AWS_SECRET_ACCESS_KEY=cloud-secret", "DATABASE_URL=postgres://op:pw@db", "PATHOLOGICAL", "=odd",
	}
	want := []string{"PATH=/usr/bin", "HOME=/home/op", "LANG=C.UTF-8", "LC_ALL=C", "GOMAXPROCS=2",
		"RAYO_DEBUG=1", "RAYO_STATE_DIR=/var/lib/rayo"}
	if got := workerBaseEnv(daemon, false); !slices.Equal(got, want) {
		t.Fatalf("a daemon's workers start with %q, want %q", got, want)
	}
	// The embedded cluster's workers run the driver's program: all of it.
	if got := workerBaseEnv(daemon, true); !slices.Equal(got, daemon) {
		t.Fatalf("an embedded cluster's workers start with %q, want the driver's whole environment", got)
	}
}
