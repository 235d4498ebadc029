package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// CADir is where a head keeps its cluster's CA (ca.crt, ca.key): in its
// state folder, so that a head started again keeps the same CA and the
// nodes' certificates stay good.
func CADir(stateDir string) string { return filepath.Join(stateDir, "tls") }

// ErrNoPin refuses to join over TLS without knowing the cluster's CA.
var ErrNoPin = errors.New("node: joining over TLS needs the cluster's CA fingerprint: pass the join token the head printed (--token K10<fingerprint>::<secret>, or RAYO_TOKEN), or --tls-cert/--tls-key/--tls-ca")

// setupTLS gives the node its credentials and makes them the process's
// TLS (rpc.SetDefaultTLS), before any TCP link: an operator's files
// (TLSCert, TLSKey, TLSCA); on the head, a certificate of the cluster's
// CA, given (TLSCA and TLSCAKey) or minted at its first start; elsewhere,
// one the control store signs for the token's holder, over TLS pinned to
// the join token's fingerprint or to the CA certificate TLSCA. They are
// saved in the session folder's tls/ for the node's workers and drivers
// (pki.EnvDir).
func (n *Node) setupTLS(ctx context.Context) error {
	cfg := n.cfg
	if !cfg.TLS {
		rpc.SetDefaultTLS(nil)
		return nil
	}
	hosts := []string{cfg.Host}
	name := "rayo node " + cfg.Host
	var creds *pki.Credentials
	var err error
	givenCA := cfg.TLSCA != "" && cfg.TLSCert == "" && cfg.TLSKey == ""
	switch {
	case cfg.TLSCAKey != "" && (!givenCA || !cfg.Head):
		return errors.New("node: --tls-ca-key is for the head, with --tls-ca (the cluster's CA) and without --tls-cert/--tls-key")
	case givenCA && cfg.Head && cfg.TLSCAKey == "":
		return errors.New("node: on the head, --tls-ca alone takes the cluster's CA: give its key with --tls-ca-key, or --tls-cert and --tls-key for an operator's PKI")
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		if cfg.TLSCert == "" || cfg.TLSKey == "" || cfg.TLSCA == "" {
			return errors.New("node: an operator's PKI takes all three of --tls-cert, --tls-key and --tls-ca")
		}
		creds, err = pki.Load(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA)
	case cfg.Head:
		var ca *pki.CA
		var minted bool
		if ca, minted, err = n.clusterCA(ctx); err != nil {
			return fmt.Errorf("node: the cluster's CA: %w", err)
		}
		if minted {
			n.logf("rayo: minted the cluster's CA in %s (fingerprint %s)", CADir(cfg.StateDir), pki.Fingerprint(ca.Cert))
		}
		if fp, _, _ := pki.ParseToken(cfg.Token); fp != "" && fp != pki.Fingerprint(ca.Cert) {
			return fmt.Errorf("node: the token pins the CA %s, but the cluster's CA is %s", fp, pki.Fingerprint(ca.Cert))
		}
		if creds, err = ca.Issue(name, hosts); err == nil {
			creds.Issuer = ca
			n.joinToken = pki.JoinToken(ca.Cert, pki.Secret(cfg.Token))
		}
	default:
		token, terr := n.pinnedToken(givenCA)
		if terr != nil {
			return terr
		}
		creds, err = rpc.Enroll(ctx, cfg.Address, token, name, hosts)
	}
	if err != nil {
		return fmt.Errorf("node: TLS credentials: %w", err)
	}
	dir := filepath.Join(n.session, "tls")
	if err := creds.Save(dir); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	// Workers, the control store's process and submitted drivers inherit
	// the process's environment; the CA's folder goes to the control
	// store's process alone (startGCSProc).
	if err := os.Setenv(pki.EnvDir, dir); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.tlsDir = dir
	rpc.SetDefaultTLS(rpc.NewTLS(creds))
	return nil
}

// The CA's place among the control store's tables in Redis.
const (
	caTable = "tls"
	caKey   = "ca"
)

// clusterCA is the head's CA: the one given by --tls-ca and --tls-ca-key
// (Redis is not asked: the files are the CA's source), else one kept in
// its state folder and, with Redis, with the control store's tables too,
// so that a head started again on another machine (another state folder)
// keeps the CA that its nodes' certificates and join tokens name. Redis's
// copy wins.
func (n *Node) clusterCA(ctx context.Context) (*pki.CA, bool, error) {
	dir := CADir(n.cfg.StateDir)
	if n.cfg.TLSCAKey != "" {
		// The operator's CA (a Kubernetes Secret, say) is the cluster's,
		// whatever an earlier start kept: copied into the state folder,
		// where the control store's process reads it to sign.
		ca, err := pki.LoadCAFiles(n.cfg.TLSCA, n.cfg.TLSCAKey)
		if err != nil {
			return nil, false, err
		}
		return ca, false, ca.Save(dir)
	}
	if n.cfg.RedisAddress == "" {
		return pki.LoadOrCreateCA(dir)
	}
	st, err := gcs.DialRedis(ctx, n.cfg.RedisAddress, n.cfg.RedisPassword, gcs.DefaultRedisPrefix)
	if err != nil {
		return nil, false, err
	}
	defer st.Close()
	b, found, err := st.Get(ctx, caTable, caKey)
	if err != nil {
		return nil, false, err
	}
	if found {
		ca, err := pki.ParseCA(b)
		if err != nil {
			return nil, false, err
		}
		return ca, false, ca.Save(dir)
	}
	ca, minted, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		return nil, false, err
	}
	if b, err = ca.Marshal(); err != nil {
		return nil, false, err
	}
	if err := st.Put(ctx, caTable, caKey, b); err != nil {
		return nil, false, err
	}
	return ca, minted, nil
}

// JoinToken is what nodes on other machines join with
// (K10<CA fingerprint>::<secret>): "" but on a head that minted its CA.
func (n *Node) JoinToken() string { return n.joinToken }

// LoadTLS makes the credentials in a node's tls folder (ClusterInfo.TLSDir,
// or pki.EnvDir) this process's TLS; with caDir, the CA there signs
// joining nodes' certificates (the head's control store process). An
// empty dir leaves TLS off.
func LoadTLS(dir, caDir string) error {
	if dir == "" {
		return nil
	}
	creds, err := pki.LoadDir(dir, caDir)
	if err != nil {
		return fmt.Errorf("the node's TLS credentials: %w", err)
	}
	rpc.SetDefaultTLS(rpc.NewTLS(creds))
	return nil
}

// pinnedToken is the join token a joining node enrolls with: the one it
// was given, pinned to the cluster's CA given with --tls-ca (givenCA) or,
// when the token pins none, to the CA of a head on this machine with this
// state folder.
func (n *Node) pinnedToken(givenCA bool) (string, error) {
	cfg := n.cfg
	fp, secret, err := pki.ParseToken(cfg.Token)
	if err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	switch {
	case givenCA:
		// The cluster's CA, given as a file (a mounted Secret): pinned as a
		// join token's fingerprint would be.
		ca, err := pki.LoadCACert(cfg.TLSCA)
		if err != nil {
			return "", fmt.Errorf("node: --tls-ca: %w", err)
		}
		if fp != "" && fp != pki.Fingerprint(ca) {
			return "", fmt.Errorf("node: the join token pins the CA %s, --tls-ca is %s: %w", fp, pki.Fingerprint(ca), pki.ErrFingerprint)
		}
		return pki.JoinToken(ca, secret), nil
	case fp == "":
		ca, err := pki.LoadCA(CADir(cfg.StateDir))
		if err != nil {
			return "", ErrNoPin
		}
		return pki.JoinToken(ca.Cert, secret), nil
	}
	return cfg.Token, nil
}
