package charttest

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// caOf parses a CA Secret's certificate, checking that its key is the
// certificate's and ECDSA (which rayo's CA signs with).
func caOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	if s == nil {
		t.Fatal("no CA Secret")
	}
	b, _ := pem.Decode(s.Data["ca.crt"])
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s: ca.crt is not a PEM certificate: %q", s.Name, s.Data["ca.crt"])
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: ca.crt: %v", s.Name, err)
	}
	pair, err := tls.X509KeyPair(s.Data["ca.crt"], s.Data["ca.key"])
	if err != nil {
		t.Fatalf("%s: ca.key is not ca.crt's key: %v", s.Name, err)
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("%s: the CA's key is a %T, want ECDSA", s.Name, pair.PrivateKey)
	}
	return cert
}

// checkCASecret checks the chart's CA Secret: a CA certificate that may
// sign others, and its ECDSA key.
func checkCASecret(t *testing.T, s *corev1.Secret) {
	t.Helper()
	cert := caOf(t, s)
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("%s: not a CA certificate (IsCA %v, key usage %b)", s.Name, cert.IsCA, cert.KeyUsage)
	}
	if !strings.Contains(cert.Subject.CommonName, "ml/demo") {
		t.Errorf("%s: the CA is named %q, want the release's", s.Name, cert.Subject.CommonName)
	}
}

// checkNodeTLS checks a node pod's TLS: on (no RAYO_TLS=false), the CA's
// certificate mounted and named by RAYO_TLS_CA; its key mounted and named
// by RAYO_TLS_CA_KEY in the head's pod only, never in env or argv.
func checkNodeTLS(t *testing.T, what string, spec corev1.PodSpec, secret string) {
	t.Helper()
	head := strings.HasPrefix(what, "head")
	c := spec.Containers[0]
	env := envOf(c)
	if v, ok := env["RAYO_TLS"]; ok {
		t.Errorf("%s: RAYO_TLS=%q, want TLS on by default", what, v.Value)
	}
	for _, e := range c.Env {
		if strings.Contains(e.Value, "PRIVATE KEY") || e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secret {
			t.Errorf("%s: env %s carries the CA Secret", what, e.Name)
		}
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		if strings.Contains(a, "tls-ca-key") || strings.Contains(a, "PRIVATE") {
			t.Errorf("%s: argv %q names the CA's key", what, a)
		}
	}
	if env["RAYO_TLS_CA"].Value != "/etc/rayo/tls/ca.crt" {
		t.Errorf("%s: RAYO_TLS_CA %q", what, env["RAYO_TLS_CA"].Value)
	}
	wantKey, wantItems := "", []string{"ca.crt"}
	if head {
		wantKey, wantItems = "/etc/rayo/tls/ca.key", []string{"ca.crt", "ca.key"}
	}
	if env["RAYO_TLS_CA_KEY"].Value != wantKey {
		t.Errorf("%s: RAYO_TLS_CA_KEY %q, want %q", what, env["RAYO_TLS_CA_KEY"].Value, wantKey)
	}
	var items []string
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil || v.Secret.SecretName != secret {
				continue
			}
			mounted = m.MountPath == "/etc/rayo/tls" && m.ReadOnly
			for _, it := range v.Secret.Items {
				items = append(items, it.Key)
			}
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0o040 {
				t.Errorf("%s: the CA volume's mode %v, want readable by its owner and the pod's group only", what, v.Secret.DefaultMode)
			}
		}
	}
	if !mounted {
		t.Errorf("%s: the CA Secret %s is not mounted read-only at /etc/rayo/tls", what, secret)
	}
	if !slices.Equal(items, wantItems) {
		t.Errorf("%s: the CA volume projects %v, want %v", what, items, wantItems)
	}
}

// Each install mints a CA of its own; with tls.existingSecret the nodes
// use that Secret and the chart makes none.
func TestTLSChoices(t *testing.T) {
	a, b := mustRender(t, nil), mustRender(t, nil)
	if caOf(t, a.secrets["demo-rayo-tls"]).Equal(caOf(t, b.secrets["demo-rayo-tls"])) {
		t.Error("two installs have the same CA")
	}
	m := mustRender(t, map[string]any{"tls": map[string]any{"existingSecret": "my-ca"}})
	if _, ok := m.secrets["demo-rayo-tls"]; ok {
		t.Error("a CA Secret made beside an existing one")
	}
	checkNodeTLS(t, "head", m.statefulSets["demo-rayo-head"].Spec.Template.Spec, "my-ca")
	checkNodeTLS(t, "worker", m.deployments["demo-rayo-worker-default"].Spec.Template.Spec, "my-ca")
}
