package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/rayo-dev/rayo/internal/jobs"
)

// A page on evil.example whose name now resolves to 127.0.0.1 (DNS
// rebinding) sends Host: evil.example: it must not read the API, nor
// reach the job API with a token a user typed into it.
func TestHostHeaderMustNameThisServer(t *testing.T) {
	m, err := jobs.New(jobs.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	srv := httptest.NewServer(New(Config{Source: newFake(), Jobs: m, AllowedHosts: []string{"head.example.org"}}))
	t.Cleanup(srv.Close)
	hostname, _ := os.Hostname()
	for _, c := range []struct {
		host string
		want int
	}{
		{"evil.example:8265", http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
		{"localhost.evil.example", http.StatusForbidden},
		{"127.0.0.1:8265", http.StatusOK},
		{"[::1]:8265", http.StatusOK},
		{"10.1.2.3", http.StatusOK},
		{"localhost:8265", http.StatusOK},
		{"HEAD.example.org.:8265", http.StatusOK},
		{hostname, http.StatusOK},
	} {
		for _, path := range []string{"/api/v0/nodes", "/api/jobs/", "/metrics", "/"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			req.Host = c.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("GET %s with Host %q: %d, want %d", path, c.host, resp.StatusCode, c.want)
			}
		}
	}
}

// Beyond loopback, whoever reaches the port could read every log and job
// output: reads need the token there, as writes always do.
func TestReadsNeedTheTokenWhenAsked(t *testing.T) {
	m, err := jobs.New(jobs.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	const token = "0123456789abcdef0123456789abcdef"
	for _, needed := range []bool{false, true} {
		srv := httptest.NewServer(New(Config{Source: newFake(), Jobs: m, Token: token, ReadsNeedToken: needed}))
		for _, path := range []string{"/api/v0/nodes", "/api/v0/logs?node_id=x&pid=1", "/api/v0/tasks/summarize", "/api/jobs/", "/metrics"} {
			want := http.StatusUnauthorized
			if !needed {
				want = 0 // whatever the endpoint answers, but not 401
			}
			code, body := do(t, http.MethodGet, srv.URL+path, "", "", nil)
			if needed && (code != want || !strings.Contains(body, "needs the cluster token")) || !needed && code == http.StatusUnauthorized {
				t.Errorf("reads need token %v: GET %s without it: %d %s", needed, path, code, body)
			}
			if code, body := do(t, http.MethodGet, srv.URL+path, "wrong-token", "", nil); needed && code != http.StatusUnauthorized {
				t.Errorf("GET %s with a wrong token: %d %s", path, code, body)
			}
			if code, body := do(t, http.MethodGet, srv.URL+path, token, "", nil); code == http.StatusUnauthorized {
				t.Errorf("GET %s with the token: %d %s", path, code, body)
			}
		}
		// Probes carry no token: the health check answers them.
		if code, body := do(t, http.MethodGet, srv.URL+"/api/v0/healthz", "", "", nil); code == http.StatusUnauthorized {
			t.Errorf("reads need token %v: the health check without it: %d %s", needed, code, body)
		}
		// The dashboard's page and scripts hold no data: served to all, so
		// that it can ask for the token.
		if code, _ := do(t, http.MethodGet, srv.URL+"/", "", "", nil); code != http.StatusOK {
			t.Errorf("reads need token %v: GET / without it: %d", needed, code)
		}
		srv.Close()
	}
}

// localRequest is httptest.NewRequest as a client of this machine sends
// it: to 127.0.0.1, not to the example.com that NewRequest names, which
// the Host check refuses.
func localRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "127.0.0.1:8265"
	return r
}
