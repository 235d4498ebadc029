// Package web holds rayo's web dashboard: static HTML, CSS and JavaScript
// modules embedded in the binary, a single-page application that reads the
// JSON state API (docs/state-api.md) from the same origin. It fetches
// nothing from anywhere else, so it works offline.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var staticFS embed.FS

// contentSecurityPolicy lets the page load only its own assets and talk only
// to its own origin: a stray external URL fails loudly in the browser (and in
// the tests) instead of silently needing the network.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; " +
	"style-src 'self'; script-src 'self'; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// contentTypes names the types of the assets we ship, so the answer does not
// depend on the host's mime.types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

type asset struct {
	data        []byte
	etag        string
	contentType string
}

// loadAssets reads every embedded file once, keyed by its URL path.
func loadAssets() (map[string]asset, error) {
	root, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	assets := make(map[string]asset)
	err = fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			ctype = "application/octet-stream"
		}
		assets["/"+name] = asset{
			data:        data,
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
			contentType: ctype,
		}
		return nil
	})
	return assets, err
}

// Handler serves the dashboard: its assets by path, and index.html for `/`
// and for any other path without a file extension, so that client-side
// routes load the application. A missing asset (a path with an extension)
// is a 404. Responses carry an ETag and `Cache-Control: no-cache`: browsers
// revalidate cheaply, and a new binary never leaves a stale script behind.
// Mount it at the root of the API server's mux, after /api/ and /metrics.
func Handler() http.Handler {
	assets, err := loadAssets()
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "dashboard assets unreadable: "+err.Error(), http.StatusInternalServerError)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		a, ok := assets[p]
		if !ok {
			if path.Ext(p) != "" || strings.HasPrefix(p, "/api/") {
				http.NotFound(w, r)
				return
			}
			a = assets["/index.html"]
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if a.contentType == contentTypes[".html"] {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
		}
		serveAsset(w, r, a)
	})
}

// serveAsset answers with the whole asset, or 304 when the request's
// If-None-Match names its ETag. It deliberately does not use
// http.ServeContent: the assets are small, so byte ranges buy nothing, and
// ServeContent's Range parsing is what GO-2026-6609 (unbounded CPU on a
// Range header of many small ranges, before Go 1.26.9) attacks, on a path
// that needs no token. Range and If-Range are ignored, as RFC 9110 allows.
func serveAsset(w http.ResponseWriter, r *http.Request, a asset) {
	if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
		h := w.Header()
		h.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(a.data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.data)
	}
}

// etagMatches reports whether an If-None-Match value (a list of entity
// tags, weak or strong, or "*") names etag. Weak comparison, as RFC 9110
// prescribes for If-None-Match.
func etagMatches(header, etag string) bool {
	for _, tag := range strings.Split(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}
