package rayo

// TLSFiles, for Init joining a cluster (Address), makes the driver present
// this certificate (PEM, with its chain) and key on its links to other
// nodes, and trust the CA certificates in caFile, instead of the
// credentials of the node it runs on: for a cluster started with an
// operator's own PKI (rayo start --tls-cert, --tls-key, --tls-ca). All
// three are needed.
func TLSFiles(certFile, keyFile, caFile string) Option {
	return option("TLSFiles", forInit, func(o *options) { o.tlsFiles = []string{certFile, keyFile, caFile} })
}
