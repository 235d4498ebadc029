package rayo

import (
	"errors"
	"fmt"

	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// TLSFiles, for Init joining a cluster (Address), makes the driver present
// this certificate (PEM, with its chain) and key on its links to other
// nodes, and trust the CA certificates in caFile, instead of the
// credentials of the node it runs on: for a cluster started with an
// operator's own PKI (rayo start --tls-cert, --tls-key, --tls-ca). All
// three are needed.
func TLSFiles(certFile, keyFile, caFile string) Option {
	return option("TLSFiles", forInit, func(o *options) { o.tlsFiles = []string{certFile, keyFile, caFile} })
}

// driverTLS sets the TLS of a driver joining a cluster: the files of
// TLSFiles, or else those of the node it runs on (tlsDir; "": TLS off).
func driverTLS(files []string, tlsDir string) error {
	if files == nil {
		return node.LoadTLS(tlsDir, "")
	}
	if len(files) != 3 || files[0] == "" || files[1] == "" || files[2] == "" {
		return errors.New("rayo: TLSFiles takes a certificate, its key and a CA file, all three")
	}
	creds, err := pki.Load(files[0], files[1], files[2])
	if err != nil {
		return fmt.Errorf("rayo: TLSFiles: %w", err)
	}
	rpc.SetDefaultTLS(rpc.NewTLS(creds))
	return nil
}
