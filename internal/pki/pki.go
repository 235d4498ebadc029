// Package pki is a rayo cluster's certificate authority and the TLS
// settings of its links.
//
// The head mints the CA (ECDSA P-256) at its first start and keeps it in
// its state folder; every node gets a certificate signed by it, and every
// TCP link is TLS 1.3 with certificates on both ends. A certificate says
// "a member of this cluster": peers check that it chains to the cluster's
// CA, not which host presents it (nodes are reached by IP address, and any
// member may run any task).
//
// A node on another machine joins with a join token,
//
//	K10<sha256 of the CA certificate, 64 hex digits>::<cluster secret>
//
// (the form k3s uses): it opens TLS to the control store, checks that the
// CA that signed the store's certificate has that fingerprint, and only
// then presents the secret and asks for a certificate of its own (see
// rpc.Enroll). The secret never crosses the network in clear, and a
// machine in the middle that lacks the CA's key cannot learn it.
package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names in a credentials folder (see Save and Load).
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CertFile   = "node.crt"
	KeyFile    = "node.key"
)

// EnvDir names the folder holding a process's credentials (node.crt,
// node.key, ca.crt): a node's daemon sets it for its workers and its
// control store process.
const EnvDir = "RAYO_TLS_DIR"

// EnvCADir names the folder of the CA's key, in the head's control store
// process, which signs joining nodes' certificates.
const EnvCADir = "RAYO_TLS_CA_DIR"

// certLife is how long a certificate is valid: the CA's and the nodes'.
const (
	caLife   = 10 * 365 * 24 * time.Hour
	nodeLife = 365 * 24 * time.Hour
)

// ErrFingerprint is how a peer whose CA is not the pinned one is refused.
var ErrFingerprint = errors.New("pki: the peer's CA does not have the fingerprint of the join token")

// CA is a cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA mints a CA.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"rayo"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return s, nil
}

// LoadOrCreateCA reads the CA kept in dir (ca.crt, ca.key), or mints one
// and writes it there, the key readable by this user only. It reports
// whether it minted one.
func LoadOrCreateCA(dir string) (*CA, bool, error) {
	ca, err := LoadCA(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if ca, err = NewCA("rayo cluster CA"); err != nil {
		return nil, false, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// Save writes the CA to dir (ca.crt, and ca.key readable by this user
// only).
func (ca *CA) Save(dir string) error {
	keyPEM, err := ca.keyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	// The key first: a ca.crt without its key is not taken for a CA.
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CACertFile), pemBlock("CERTIFICATE", ca.Cert.Raw))
}

func (ca *CA) keyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// Marshal is the CA, certificate and key, as PEM: for a control store
// that keeps it with its tables (ParseCA reads it back).
func (ca *CA) Marshal() ([]byte, error) {
	keyPEM, err := ca.keyPEM()
	if err != nil {
		return nil, err
	}
	return append(pemBlock("CERTIFICATE", ca.Cert.Raw), keyPEM...), nil
}

// ParseCA reads what Marshal wrote.
func ParseCA(p []byte) (*CA, error) {
	return parseCA(p, p, "the stored CA")
}

func parseCA(certPEM, keyPEM []byte, where string) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", where, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: the key of %s is not ECDSA", where)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", where, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: the certificate of %s is not a CA's", where)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads the CA kept in dir; an error wrapping os.ErrNotExist says
// there is none.
func LoadCA(dir string) (*CA, error) {
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return parseCA(certPEM, keyPEM, "the CA in "+dir)
}

// LoadCAFiles reads a CA given as files (an operator's: a Kubernetes
// Secret, say): its certificate and its ECDSA key, in PEM.
func LoadCAFiles(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("pki: the CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: the CA key: %w", err)
	}
	return parseCA(certPEM, keyPEM, certFile)
}

// LoadCACert reads a CA certificate (PEM) from file: the one a node pins
// when it joins, in place of a join token's fingerprint.
func LoadCACert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pki: the CA certificate: %w", err)
	}
	certs, err := ParseChain(b)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", file, err)
	}
	if len(certs) != 1 || !certs[0].IsCA {
		return nil, fmt.Errorf("pki: %s: want one CA certificate, have %d certificates (the first a CA's: %v)", file, len(certs), certs[0].IsCA)
	}
	return certs[0], nil
}

// Fingerprint is the SHA-256 of a certificate, in hex: what a join token
// pins.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// JoinToken is the token a node on another machine joins with: the CA's
// fingerprint and the cluster's secret.
func JoinToken(ca *x509.Certificate, secret string) string {
	return "K10" + Fingerprint(ca) + "::" + secret
}

// ParseToken splits a token into the CA fingerprint it pins ("" for a
// plain secret) and the secret. A token that starts like a join token but
// is malformed is an error, rather than a secret that would fail later.
func ParseToken(token string) (fingerprint, secret string, err error) {
	if !strings.HasPrefix(token, "K10") {
		return "", token, nil
	}
	fp, sec, ok := strings.Cut(token[3:], "::")
	if !ok || len(fp) != 64 || sec == "" {
		return "", "", errors.New("pki: a join token is K10<64 hex digits of the CA's SHA-256>::<secret>")
	}
	if _, err := hex.DecodeString(fp); err != nil {
		return "", "", fmt.Errorf("pki: the join token's fingerprint is not hex: %w", err)
	}
	return strings.ToLower(fp), sec, nil
}

// Secret is the secret part of a token (the token itself unless it is a
// join token).
func Secret(token string) string {
	_, s, err := ParseToken(token)
	if err != nil {
		return token
	}
	return s
}

// NewKey makes a node's private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: key: %w", err)
	}
	return k, nil
}

// NewRequest is a certificate request for key, naming the node and the
// hosts it is reached at.
func NewRequest(key *ecdsa.PrivateKey, name string, hosts []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name, Organization: []string{"rayo"}}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	return der, nil
}

// maxRequest bounds a certificate request's size.
const maxRequest = 4 << 10

// Sign issues a node certificate for a request (DER), good for serving and
// dialing; it returns the certificate's DER.
func (ca *CA) Sign(requestDER []byte) ([]byte, error) {
	if len(requestDER) > maxRequest {
		return nil, fmt.Errorf("pki: certificate request of %d bytes (at most %d)", len(requestDER), maxRequest)
	}
	req, err := x509.ParseCertificateRequest(requestDER)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	if _, ok := req.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("pki: certificate request: want an ECDSA key")
	}
	return ca.issue(req.Subject.CommonName, req.DNSNames, req.IPAddresses, req.PublicKey)
}

func (ca *CA) issue(name string, dns []string, ips []net.IP, pub any) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"rayo"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign: %w", err)
	}
	return der, nil
}

// Credentials are what a process presents and trusts on its TLS links.
type Credentials struct {
	Cert tls.Certificate // this process's chain (leaf first) and key
	Pool *x509.CertPool  // the CAs peers' certificates must chain to
	// CAPEM is Pool's certificates, as they were read.
	CAPEM []byte
	// CA is the cluster's CA certificate when the cluster mints its own
	// (nil with an operator's PKI); Issuer signs joining nodes' requests
	// (the head only).
	CA     *x509.Certificate
	Issuer *CA
}

// Issue makes credentials for a node of this CA: a fresh key and a
// certificate naming hosts.
func (ca *CA) Issue(name string, hosts []string) (*Credentials, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	req, err := NewRequest(key, name, hosts)
	if err != nil {
		return nil, err
	}
	der, err := ca.Sign(req)
	if err != nil {
		return nil, err
	}
	return Assemble(key, der, ca.Cert)
}

// Assemble makes credentials from a key, its certificate (DER) and the CA
// that signed it.
func Assemble(key *ecdsa.PrivateKey, certDER []byte, ca *x509.Certificate) (*Credentials, error) {
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("pki: the certificate is not signed by the CA: %w", err)
	}
	return &Credentials{
		Cert:  tls.Certificate{Certificate: [][]byte{certDER, ca.Raw}, PrivateKey: key, Leaf: leaf},
		Pool:  pool,
		CAPEM: pemBlock("CERTIFICATE", ca.Raw),
		CA:    ca,
	}, nil
}

// Save writes the credentials to dir (node.crt with its chain, node.key,
// ca.crt), readable by this user only: for the processes of a node
// (workers, drivers), which load them with LoadDir.
func (c *Credentials) Save(dir string) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.Cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("pki: key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	var chain bytes.Buffer
	for _, der := range c.Cert.Certificate {
		chain.Write(pemBlock("CERTIFICATE", der))
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{KeyFile, pemBlock("PRIVATE KEY", keyDER)},
		{CertFile, chain.Bytes()},
		{CACertFile, c.CAPEM},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

// Load reads credentials from files: a certificate (with its chain), its
// key, and the CA certificates to trust. It checks that the certificate
// chains to one of them.
func Load(certFile, keyFile, caFile string) (*Credentials, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("pki: %s holds no PEM certificate", caFile)
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("pki: %s is not signed by a CA of %s: %w", certFile, caFile, err)
	}
	return &Credentials{Cert: pair, Pool: pool, CAPEM: caPEM}, nil
}

// LoadDir reads what Save wrote, and the CA's key when dir (or caDir, if
// not empty) holds it.
func LoadDir(dir, caDir string) (*Credentials, error) {
	c, err := Load(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	if len(c.Cert.Certificate) > 1 {
		if ca, err := x509.ParseCertificate(c.Cert.Certificate[len(c.Cert.Certificate)-1]); err == nil && ca.IsCA {
			c.CA = ca
		}
	}
	if caDir == "" {
		caDir = dir
	}
	if ca, err := LoadCA(caDir); err == nil {
		c.Issuer, c.CA = ca, ca.Cert
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return c, nil
}

// ServerConfig is the TLS configuration of a listener: TLS 1.3 only, this
// process's certificate, and peers' certificates checked against the
// CAs. With enroll, a peer may come without a certificate (to get one:
// rpc treats it as enrolling only); otherwise it must present one.
func (c *Credentials) ServerConfig(enroll bool) *tls.Config {
	auth := tls.RequireAndVerifyClientCert
	if enroll {
		auth = tls.VerifyClientCertIfGiven
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		ClientCAs:    c.Pool,
		ClientAuth:   auth,
		// Full 16 KiB records from the first byte: bulk transfers are
		// what matters here, not the first paint of a web page.
		DynamicRecordSizingDisabled: true,
	}
}

// ClientConfig is the TLS configuration of a dial: TLS 1.3 only, this
// process's certificate, and the server's checked against the CAs (its
// chain, not its host name: see the package comment).
func (c *Credentials) ClientConfig() *tls.Config {
	pool := c.Pool
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{c.Cert},
		InsecureSkipVerify:          true, // the chain is checked in VerifyConnection
		VerifyConnection:            func(cs tls.ConnectionState) error { return verifyChain(cs, pool) },
		DynamicRecordSizingDisabled: true,
	}
}

// PinnedConfig is the TLS configuration of a dial by a node that has no
// certificate yet: the server's chain must end in a CA whose fingerprint
// is fp.
func PinnedConfig(fp string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the chain is checked in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, cert := range cs.PeerCertificates {
				sum := sha256.Sum256(cert.Raw)
				if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(strings.ToLower(fp))) == 1 && cert.IsCA {
					pool := x509.NewCertPool()
					pool.AddCert(cert)
					return verifyChain(cs, pool)
				}
			}
			return ErrFingerprint
		},
	}
}

// verifyChain checks that the peer's leaf chains to roots.
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("pki: the peer presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("pki: the peer's certificate is not of this cluster: %w", err)
	}
	return nil
}

// ParseChain reads PEM certificates (a node's certificate, then its CA's).
func ParseChain(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("pki: no certificate")
	}
	return out, nil
}

// PEM encodes certificates one after another.
func PEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(pemBlock("CERTIFICATE", c.Raw))
	}
	return b.Bytes()
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile writes data to path through a new temporary file (mode 0600,
// created exclusively, so no planted file or link is followed) renamed
// into place.
func writeFile(path string, data []byte) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.%s.tmp", path, hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}
