package dashboard

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/stateapi"
)

// TestListenTLS: the API server over TLS answers a client that trusts the
// cluster's CA, and refuses one that trusts another CA, one that speaks
// plain HTTP and one limited to TLS 1.2.
func TestListenTLS(t *testing.T) {
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.Issue("rayo node 127.0.0.1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ListenTLS("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello over "+r.Proto)
	}), &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{creds.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %q", srv.URL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := &stateapi.Client{Base: srv.URL()}
	if err := c.TrustCA(pki.PEM(ca.Cert)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "/x", nil)
	if err != nil || string(got) != "hello over HTTP/1.1" {
		t.Fatalf("a client of the cluster's CA: %q, %v", got, err)
	}

	other, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	c2 := &stateapi.Client{Base: srv.URL()}
	if err := c2.TrustCA(pki.PEM(other.Cert)); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Get(ctx, "/x", nil); err == nil || !strings.Contains(err.Error(), "not of this cluster") {
		t.Fatalf("a client of another CA: %v; want the certificate refused", err)
	}

	// Plain HTTP to the TLS port gets no answer of the handler.
	if resp, err := http.Get("http://" + srv.Addr() + "/x"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "hello") {
			t.Fatalf("plain HTTP was served: %s", b)
		}
	}

	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}}}
	if resp, err := old.Get(srv.URL() + "/x"); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.2 client was served")
	}
	if err := c.TrustCA([]byte("not PEM")); err == nil {
		t.Fatal("TrustCA took a file without a certificate")
	}
}
