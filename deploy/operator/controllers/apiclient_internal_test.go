package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/internal/pki"
)

// The RayoJob controller reaches a cluster's API server over HTTPS and
// checks its certificate against the CA in the cluster's TLS Secret, by
// its chain (the head's certificate names its pod IP, not the Service):
// the head's server is trusted, and a server whose certificate is of
// another CA is refused before the token is sent.
func TestAPIClientTrustsTheClusterCA(t *testing.T) {
	ctx := context.Background()
	ca, err := pki.NewCA("cluster")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	srv, gotAuth := startCAServer(t, ca)

	scheme, err := NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	good, bad, noCA, objs := trustClusters(t, ca, other)
	r := &JobReconciler{
		Client:    fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build(),
		Dashboard: func(context.Context, *v1alpha1.RayoCluster) (string, error) { return srv.URL, nil },
	}
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("the test server is at %s", srv.URL)
	}

	api, err := r.apiClient(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Get(ctx, "/api/v0/healthz", nil); err != nil {
		t.Fatalf("the cluster's API server, with a certificate of its CA: %v", err)
	}
	if len(*gotAuth) != 1 || (*gotAuth)[0] != "Bearer secret-of-good" {
		t.Fatalf("the server saw Authorization %q", *gotAuth)
	}

	api, err = r.apiClient(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Get(ctx, "/api/v0/healthz", nil); err == nil || !strings.Contains(err.Error(), "not of this cluster") {
		t.Fatalf("a server whose certificate is of another CA: %v, want refused", err)
	}
	if len(*gotAuth) != 1 {
		t.Fatalf("the token reached a server of another CA: %q", *gotAuth)
	}

	if _, err := r.apiClient(ctx, noCA); err == nil || !strings.Contains(err.Error(), "the CA of noca") {
		t.Fatalf("a cluster without its TLS secret: %v", err)
	}
}

// startCAServer starts an API server with a certificate of ca, naming
// another host than the one dialed (as a pod IP behind a Service), until
// the test ends. It records the Authorization header of every request.
func startCAServer(t *testing.T, ca *pki.CA) (*httptest.Server, *[]string) {
	t.Helper()
	creds, err := ca.Issue("rayo node 10.1.2.3", []string{"10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	var gotAuth []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		_, _ = w.Write([]byte("ok"))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{creds.Cert}, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &gotAuth
}

// trustClusters returns three clusters and their Secrets: good, with its
// CA ca; bad, with the CA other; and noCA, with a token but no TLS Secret.
func trustClusters(t *testing.T, ca, other *pki.CA) (good, bad, noCA *v1alpha1.RayoCluster, objs []client.Object) {
	t.Helper()
	cluster := func(name string, ca *pki.CA) (*v1alpha1.RayoCluster, []client.Object) {
		c := &v1alpha1.RayoCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
		der, err := x509.MarshalECPrivateKey(ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		return c, []client.Object{tokenSecret(c, "secret-of-"+name),
			tlsSecret(c, pki.PEM(ca.Cert), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))}
	}
	good, objs = cluster("good", ca)
	bad, more := cluster("bad", other)
	noCA = &v1alpha1.RayoCluster{ObjectMeta: metav1.ObjectMeta{Name: "noca", Namespace: "ns"}}
	objs = append(append(objs, more...), tokenSecret(noCA, "secret-of-noca"))
	for _, o := range objs { // the API server turns StringData into Data; the fake client does not
		if sec, ok := o.(*corev1.Secret); ok && sec.StringData != nil {
			sec.Data = map[string][]byte{}
			for k, v := range sec.StringData {
				sec.Data[k] = []byte(v)
			}
		}
	}
	return good, bad, noCA, objs
}
