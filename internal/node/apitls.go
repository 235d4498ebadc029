package node

import (
	"crypto/tls"

	"github.com/rayo-dev/rayo/internal/rpc"
)

// apiTLS is how the head's API server listening on host speaks: HTTPS with
// the node's certificate of the cluster's CA when host is beyond loopback
// and the cluster has TLS, so that the token its clients present and the
// logs and state it serves do not cross the network in clear; nil (plain
// HTTP) on loopback, which only this machine reaches (as Ray's dashboard
// is served), or when TLS is off (--tls=false).
//
// Clients check the certificate's chain to the cluster's CA, not the host
// name it was reached by, as the cluster's own links do (see package
// pki): rayo commands and rayo.Timeline find the CA in this machine's
// state folder, others take ca.crt from there. Browsers do not know the
// CA: import it, or reach a loopback API server through an SSH tunnel.
func apiTLS(host string) *tls.Config {
	t := rpc.DefaultTLS()
	if isLoopback(host) || t == nil || t.Server == nil || len(t.Server.Certificates) == 0 {
		return nil
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: t.Server.Certificates,
	}
}
