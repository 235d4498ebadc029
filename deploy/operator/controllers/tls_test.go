package controllers_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rayo-dev/rayo/deploy/operator/controllers"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// checkPodTLS checks a node pod's spec: TLS on (no RAYO_TLS=false), the
// cluster's CA certificate mounted and named by RAYO_TLS_CA, its key
// mounted in the head's pod alone and never in env or argv; a worker's
// preStop hook drains it within a grace period that covers the drain.
func checkPodTLS(t *testing.T, p *corev1.Pod) {
	t.Helper()
	head := p.Labels[controllers.LabelGroup] == controllers.HeadGroup
	ctr := p.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range ctr.Env {
		env[e.Name] = e.Value
		if strings.Contains(e.Value, "PRIVATE KEY") || strings.Contains(e.Value, "CERTIFICATE") {
			t.Errorf("pod %s: env %s holds PEM", p.Name, e.Name)
		}
	}
	if v, ok := env["RAYO_TLS"]; ok {
		t.Errorf("pod %s: RAYO_TLS=%q, want TLS on by default", p.Name, v)
	}
	if env["RAYO_TLS_CA"] != controllers.TLSDir+"/"+controllers.CACertKey {
		t.Errorf("pod %s: RAYO_TLS_CA=%q", p.Name, env["RAYO_TLS_CA"])
	}
	wantKey := ""
	if head {
		wantKey = controllers.TLSDir + "/" + controllers.CAKeyKey
	}
	if env["RAYO_TLS_CA_KEY"] != wantKey {
		t.Errorf("pod %s: RAYO_TLS_CA_KEY=%q, want %q", p.Name, env["RAYO_TLS_CA_KEY"], wantKey)
	}
	for _, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
		if strings.Contains(a, "PRIVATE") || strings.Contains(a, "tls-ca-key") {
			t.Errorf("pod %s: argv %q names the CA's key", p.Name, a)
		}
	}
	var items []string
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == controllers.TLSSecretName(p.Labels[controllers.LabelCluster]) {
			for _, it := range v.Secret.Items {
				items = append(items, it.Key)
			}
			if m := v.Secret.DefaultMode; m == nil || *m&0o077 != 0o040 {
				t.Errorf("pod %s: TLS volume mode %v, want readable by owner and the pod's group only", p.Name, m)
			}
		}
	}
	want := []string{controllers.CACertKey}
	if head {
		want = append(want, controllers.CAKeyKey)
	}
	if !slices.Equal(items, want) {
		t.Errorf("pod %s: the TLS volume projects %v, want %v", p.Name, items, want)
	}
	if !slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == controllers.TLSDir && m.ReadOnly }) {
		t.Errorf("pod %s: no read-only mount at %s", p.Name, controllers.TLSDir)
	}
	hook := ctr.Lifecycle.PreStop.Exec.Command
	if head {
		if ctr.ReadinessProbe.HTTPGet == nil || ctr.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("head pod %s: readiness probe %+v, want HTTPS", p.Name, ctr.ReadinessProbe)
		}
		return
	}
	if !slices.Equal(hook, []string{"rayo", "drain", "--self", "--deadline", controllers.DrainDeadline.String()}) {
		t.Errorf("pod %s: preStop %q, want rayo drain --self", p.Name, hook)
	}
	if g := p.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= controllers.DrainDeadline {
		t.Errorf("pod %s: grace period %v does not cover the drain deadline %v", p.Name, g, controllers.DrainDeadline)
	}
}

// tlsSecret reads a cluster's TLS Secret.
func tlsSecret(t *testing.T, ctx context.Context, cluster string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := suite.client.Get(ctx, client.ObjectKey{Namespace: testNS, Name: controllers.TLSSecretName(cluster)}, &s); err != nil {
		t.Fatalf("TLS secret: %v", err)
	}
	return &s
}

// checkClusterTLS checks that a running cluster's links are TLS with the
// CA the operator minted: the TLS Secret holds a CA and its key, owned by
// the cluster; the head's control store proves a certificate of that CA
// (a TLS handshake pinned to its fingerprint) and not of another; the
// control store and every worker's raylet refuse a peer in clear.
func checkClusterTLS(t *testing.T, ctx context.Context, cluster string, pods []corev1.Pod) {
	t.Helper()
	s := tlsSecret(t, ctx, cluster)
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != cluster || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("TLS secret: owners %+v type %s", s.OwnerReferences, s.Type)
	}
	certs, err := pki.ParseChain(s.Data[controllers.CACertKey])
	if err != nil || len(certs) != 1 || !certs[0].IsCA {
		t.Fatalf("TLS secret's %s: %v (%d certificates)", controllers.CACertKey, err, len(certs))
	}
	if _, err := tls.X509KeyPair(s.Data[controllers.CACertKey], s.Data[controllers.CAKeyKey]); err != nil {
		t.Fatalf("TLS secret: the key is not the CA's: %v", err)
	}
	fp := pki.Fingerprint(certs[0])
	tok := token(t, ctx, cluster)

	headAddr, err := suite.kubelet.ResolveService(ctx, controllers.HeadName(cluster), controllers.PortControlStore)
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(pin string) error {
		d := tls.Dialer{Config: pki.PinnedConfig(pin)}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", headAddr)
		if err != nil {
			return err
		}
		st := c.(*tls.Conn).ConnectionState()
		_ = c.Close()
		if st.Version != tls.VersionTLS13 {
			return fmt.Errorf("TLS version %x, want 1.3", st.Version)
		}
		return nil
	}
	if err := handshake(fp); err != nil {
		t.Errorf("the head's control store, pinned to the Secret's CA: %v", err)
	}
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(pki.Fingerprint(other.Cert)); !errors.Is(err, pki.ErrFingerprint) {
		t.Errorf("the head's control store, pinned to another CA: %v, want %v", err, pki.ErrFingerprint)
	}
	addrs := []string{headAddr}
	for _, p := range pods {
		if p.Labels[controllers.LabelGroup] == controllers.HeadGroup {
			continue
		}
		ports, ok := suite.kubelet.Ports(p.Name)
		if !ok {
			t.Fatalf("pod %s does not run", p.Name)
		}
		addrs = append(addrs, net.JoinHostPort("127.0.0.1", fmt.Sprint(ports["raylet"])))
	}
	for _, a := range addrs {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := rpc.DialTLS(dctx, "tcp:"+a, tok, nil, nil)
		cancel()
		if err == nil {
			_ = c.Close()
		}
		if !errors.Is(err, rpc.ErrTLSRequired) {
			t.Errorf("in clear to %s: %v, want %v", a, err, rpc.ErrTLSRequired)
		}
	}
}

// The cluster's CA is minted once: reconciles (a worker replaced, the
// spec edited) keep the TLS Secret as it was.
func checkCAKept(t *testing.T, ctx context.Context, cluster string, before *corev1.Secret) {
	t.Helper()
	after := tlsSecret(t, ctx, cluster)
	if after.UID != before.UID || !bytes.Equal(after.Data[controllers.CACertKey], before.Data[controllers.CACertKey]) {
		t.Errorf("the TLS secret was made again (uid %s, was %s)", after.UID, before.UID)
	}
}
