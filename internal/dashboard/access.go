package dashboard

// Who may read the API server.
//
// Two checks run before any handler:
//
//   - The Host header must name this server as a browser reaches it
//     directly: an IP address, localhost, this machine's host name, or a
//     name in Config.AllowedHosts. A web page whose domain an attacker
//     points at 127.0.0.1 (DNS rebinding) sends its own domain there, and
//     is refused, so a browser on this machine cannot be used to read the
//     API or submit jobs from another site.
//   - When Config.ReadsNeedToken is set (a node sets it whenever the API
//     server listens beyond loopback), every request under /api/ and
//     /metrics needs the cluster token, as writes always do
//     (Authorization: Bearer TOKEN), but /api/v0/healthz, for probes. The
//     dashboard asks for it once and keeps it for the browser tab. On
//     loopback, reads are open: only this machine reaches them, and its
//     users can already see what runs on it; logs and job output that must
//     stay private to one user call for an API server beyond loopback or
//     one of their own.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/rayo-dev/rayo/internal/pki"
)

// allowedHost reports whether host (a Host header: name or address, and
// perhaps a port) names this server as a browser reaching it directly.
func (s *Server) allowedHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" || host == "localhost" || net.ParseIP(host) != nil {
		return true
	}
	for _, a := range s.cfg.AllowedHosts {
		if strings.EqualFold(a, host) {
			return true
		}
	}
	name, err := os.Hostname()
	return err == nil && strings.EqualFold(name, host)
}

// needsToken reports whether reading path needs the token when reads do:
// everything under /api/ and /metrics, but the health check, which
// orchestrators' probes call without credentials and which tells only
// whether the cluster answers.
func needsToken(path string) bool {
	if path == "/api/v0/healthz" {
		return false
	}
	return strings.HasPrefix(path, "/api/") || path == "/metrics"
}

// guard runs the access checks before next.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.allowedHost(r.Host) {
			fail(w, http.StatusForbidden, fmt.Errorf("host %q is not this API server's (use its IP address, localhost, or a name given with --dashboard-allowed-hosts)", r.Host))
			return
		}
		if s.cfg.ReadsNeedToken && needsToken(r.URL.Path) && !s.mayRead(r) {
			fail(w, http.StatusUnauthorized, errors.New("this API server listens beyond loopback: reading it needs the cluster token (Authorization: Bearer TOKEN; rayo commands read it from RAYO_TOKEN or this machine's cluster record)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// mayRead reports whether r may read the API server when reads need a
// credential: the cluster token, or a job's credential (a job may read
// state, not submit or stop jobs).
func (s *Server) mayRead(r *http.Request) bool {
	if s.hasToken(r) {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	_, err := pki.VerifyJobCredential(s.cfg.Token, got)
	return err == nil
}
