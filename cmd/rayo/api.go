package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/stateapi"
)

// addDashboardFlag adds --dashboard-address to cmd and returns where it
// will be stored.
func addDashboardFlag(cmd *cobra.Command) *string {
	addr := new(string)
	cmd.PersistentFlags().StringVar(addr, "dashboard-address", "",
		"the state API at http://HOST:PORT or HOST:PORT (default: RAYO_DASHBOARD_ADDRESS, else the local cluster's, else "+defaultDashboard+")")
	return addr
}

// dashboardURL picks the API's base URL: the flag, else the environment,
// else the local cluster record, else the default.
func dashboardURL(flag string) (string, error) {
	addr := flag
	if addr == "" {
		addr = os.Getenv("RAYO_DASHBOARD_ADDRESS")
	}
	if addr == "" {
		if rec, err := node.ReadCluster(node.StateDir()); err == nil {
			addr = rec.Dashboard
		}
	}
	if addr == "" {
		addr = defaultDashboard
	}
	return stateapi.BaseURL(addr)
}

// newStateClient is a client of the API server that the flag, else the
// environment, ... names (see dashboardURL).
func newStateClient(flag string) (*stateapi.Client, error) {
	base, err := dashboardURL(flag)
	if err != nil {
		return nil, err
	}
	c := &stateapi.Client{Base: base, Hint: "is a cluster running? start one with rayo start --head, or set --dashboard-address"}
	c.Token = apiToken(base)
	if err := c.TrustCAFile(apiCA()); err != nil {
		return nil, err
	}
	return c, nil
}

// apiCA is the file of the CA certificates that an https API server's
// certificate must chain to: RAYO_TLS_CA, else this machine's cluster's
// CA (ca.crt in its node's TLS folder).
func apiCA() string {
	if f := os.Getenv("RAYO_TLS_CA"); f != "" {
		return f
	}
	if rec, err := node.ReadCluster(node.StateDir()); err == nil && rec.TLSDir != "" {
		return filepath.Join(rec.TLSDir, pki.CACertFile)
	}
	return ""
}

// apiToken is the token to present to the API server at base (an API
// server beyond loopback needs it for reads, every one for job writes):
// RAYO_TOKEN, else this machine's cluster token, but only when base is
// that cluster's API server, never whatever an address flag names.
func apiToken(base string) string {
	if t := os.Getenv("RAYO_TOKEN"); t != "" {
		return t
	}
	if rec, err := node.ReadCluster(node.StateDir()); err == nil && rec.Dashboard != "" {
		if local, err := dashboardURL(rec.Dashboard); err == nil && local == base {
			return rec.Token
		}
	}
	return ""
}

// get fetches path?query whole, within stateTimeout.
func get(ctx context.Context, c *stateapi.Client, path string, query url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	return c.Get(ctx, path, query)
}

// getJSON fetches path?query within stateTimeout and decodes it into v; it
// returns the raw body too, for --json.
func getJSON(ctx context.Context, c *stateapi.Client, path string, query url.Values, v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	return c.GetJSON(ctx, path, query, v)
}
