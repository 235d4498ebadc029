package main

import (
	"github.com/spf13/pflag"

	"github.com/rayo-dev/rayo/internal/node"
)

// addTLSFlags adds the TLS flags of `rayo start`.
func addTLSFlags(f *pflag.FlagSet, cfg *node.Config) {
	f.BoolVar(&cfg.TLS, "tls", true, "TLS 1.3 with certificates on both ends on every TCP link; the head mints the cluster's CA at its first start and other machines join with its join token (--tls=false: in clear, for benchmarks)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "this node's certificate (PEM, with its chain), from an operator's own PKI instead of the cluster's CA; with --tls-key and --tls-ca")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	f.StringVar(&cfg.TLSCA, "tls-ca", "", "the CA certificates (PEM) peers' certificates must chain to, with --tls-cert")
}
