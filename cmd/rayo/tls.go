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
	f.StringVar(&cfg.TLSCA, "tls-ca", "", "the CA certificates (PEM) peers' certificates must chain to, with --tls-cert; alone, the cluster's CA certificate: on the head with --tls-ca-key, on a joining node the CA it pins (instead of a join token's fingerprint)")
	f.StringVar(&cfg.TLSCAKey, "tls-ca-key", "", "head: the private key (PEM, ECDSA) of --tls-ca, which is then the cluster's CA, signing the nodes' certificates, instead of one minted at the first start (an operator's, from a Kubernetes Secret say)")
}
