package stateapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// TrustCA makes the client verify an https API server against the CA
// certificates in caPEM (the cluster's ca.crt), as the cluster's own
// links do: the server's chain must end at one of them, whatever host
// name it was reached by (a cluster's certificates name its nodes'
// addresses, not the names operators reach them by). TLS 1.3 only.
func (c *Client) TrustCA(caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("stateapi: the cluster's CA file holds no PEM certificate")
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the chain is checked in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("stateapi: the API server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, cert := range cs.PeerCertificates[1:] {
				inter.AddCert(cert)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("stateapi: the API server's certificate is not of this cluster: %w", err)
			}
			return nil
		},
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.ForceAttemptHTTP2 = false
	tr.TLSHandshakeTimeout = 10 * time.Second
	c.HTTP = &http.Client{Transport: tr}
	return nil
}

// TrustCAFile is TrustCA with the CA certificates read from path, when
// the client's Base is https; over http it does nothing.
func (c *Client) TrustCAFile(path string) error {
	if !strings.HasPrefix(c.Base, "https://") {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("stateapi: the cluster's CA: %w", err)
	}
	return c.TrustCA(b)
}
