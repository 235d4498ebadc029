package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/node"
)

// TestGCSReconnectTimeoutFlag: --gcs-reconnect-timeout defaults to the
// node's default, takes its twin RAYO_GCS_RECONNECT_TIMEOUT, is in the
// help, and refuses what is not a positive duration.
func TestGCSReconnectTimeoutFlag(t *testing.T) {
	resolve := func(t *testing.T, env map[string]string, args ...string) (startOptions, error) {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		t.Setenv("RAYO_STATE_DIR", t.TempDir())
		var o startOptions
		cmd := &cobra.Command{Use: "start"}
		o.register(cmd.Flags())
		if err := cmd.Flags().Parse(append([]string{"--head"}, args...)); err != nil {
			return o, err
		}
		return o, o.resolve(cmd)
	}
	t.Run("default", func(t *testing.T) {
		o, err := resolve(t, nil)
		if err != nil || o.cfg.GCSReconnectTimeout != node.DefaultGCSReconnectTimeout {
			t.Fatalf("default: %v, %v; want %v", o.cfg.GCSReconnectTimeout, err, node.DefaultGCSReconnectTimeout)
		}
	})
	t.Run("flag", func(t *testing.T) {
		o, err := resolve(t, nil, "--gcs-reconnect-timeout", "7s")
		if err != nil || o.cfg.GCSReconnectTimeout != 7*time.Second {
			t.Fatalf("--gcs-reconnect-timeout 7s: %v, %v", o.cfg.GCSReconnectTimeout, err)
		}
	})
	t.Run("twin", func(t *testing.T) {
		o, err := resolve(t, map[string]string{"RAYO_GCS_RECONNECT_TIMEOUT": "1m30s"})
		if err != nil || o.cfg.GCSReconnectTimeout != 90*time.Second {
			t.Fatalf("RAYO_GCS_RECONNECT_TIMEOUT=1m30s: %v, %v", o.cfg.GCSReconnectTimeout, err)
		}
	})
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"zero", nil, []string{"--gcs-reconnect-timeout", "0s"}, "--gcs-reconnect-timeout 0s: want a positive duration"},
		{"negative", nil, []string{"--gcs-reconnect-timeout", "-5s"}, "--gcs-reconnect-timeout -5s: want a positive duration"},
		{"not a duration", nil, []string{"--gcs-reconnect-timeout", "soon"}, "invalid argument \"soon\""},
		{"bad twin", map[string]string{"RAYO_GCS_RECONNECT_TIMEOUT": "60"}, nil, "RAYO_GCS_RECONNECT_TIMEOUT=\"60\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := resolve(t, c.env, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one saying %q", err, c.want)
			}
		})
	}
	var out bytes.Buffer
	cmd := newStartCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "--gcs-reconnect-timeout") || !strings.Contains(out.String(), "fenced") {
		t.Errorf("start --help does not document --gcs-reconnect-timeout:\n%s", out.String())
	}
}

// TestStatusCountsAliveNodesOnly: rayo status counts the resources and
// the pending demand of the ALIVE nodes only; a dead node's row shows
// none, even when its record still carried some.
func TestStatusCountsAliveNodesOnly(t *testing.T) {
	list := []nodeJSON{
		{NodeID: "aaaaaaaaaaaaaaaa", Address: "h:1", State: "ALIVE", Head: true,
			Resources: map[string]float64{"CPU": 4}, Available: map[string]float64{"CPU": 3}, Pending: map[string]float64{"CPU": 1}},
		{NodeID: "bbbbbbbbbbbbbbbb", Address: "b:1", State: "DEAD", DeathReason: "no heartbeat for 5s",
			Resources: map[string]float64{"CPU": 2}, Available: map[string]float64{"CPU": 0}, Pending: map[string]float64{"CPU": 8}},
		{NodeID: "cccccccccccccccc", Address: "c:1", State: "ALIVE",
			Resources: map[string]float64{"CPU": 2, "GPU": 1}, Available: map[string]float64{"CPU": 1, "GPU": 1}},
	}
	var out bytes.Buffer
	if err := printStatus(&out, list); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"resources of the alive nodes (used/total): CPU 2/6, GPU 0/1\n",
		"pending demand: CPU 1 on aaaaaaaa\n",
		"DEAD: no heartbeat for 5s  -",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("status does not say %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "CPU 2/2") || strings.Contains(s, "CPU 8") {
		t.Errorf("status counts the dead node:\n%s", s)
	}
}
