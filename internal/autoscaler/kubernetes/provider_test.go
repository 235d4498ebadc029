package kubernetes

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The provider against the operator's real API server is tested in
// deploy/operator (envtest); these are its refusals of bad settings.

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	tok := writeFile(t, "token", "abc\n")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no cluster", Config{Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: tok}, "no RayoCluster named"},
		{"not in a pod", Config{Cluster: "c", Namespace: "ns", TokenFile: tok}, "KUBERNETES_SERVICE_HOST"},
		{"bad URL", Config{Cluster: "c", Namespace: "ns", APIServer: "ftp://x", TokenFile: tok}, "want https://HOST:PORT"},
		{"no token file", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: filepath.Join(t.TempDir(), "none")}, "token file"},
		{"empty token", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: writeFile(t, "empty", " \n")}, "is empty"},
		{"no CA file", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: tok, CAFile: filepath.Join(t.TempDir(), "none")}, "CA file"},
		{"CA without PEM", Config{Cluster: "c", Namespace: "ns", APIServer: "https://127.0.0.1:1", TokenFile: tok, CAFile: writeFile(t, "ca", "junk")}, "no PEM certificate"},
	} {
		_, err := New(ctx, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// An API server's refusal reaches the caller with its message, and the
// token is presented as a bearer token.
func TestAPIServerRefusal(t *testing.T) {
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","message":"rayoclusters.rayo.io \"c\" not found"}`))
	}))
	defer srv.Close()
	_, err := New(context.Background(), Config{Cluster: "c", Namespace: "ns", APIServer: srv.URL, TokenFile: writeFile(t, "token", "s3cret\n")})
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), `"c" not found`) {
		t.Errorf("New = %v, want the 404 and its message", err)
	}
	if auth != "Bearer s3cret" {
		t.Errorf("Authorization = %q", auth)
	}
}
