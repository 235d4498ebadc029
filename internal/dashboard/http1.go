package dashboard

import "net/http"

// HTTP1Only is the protocol set of rayo's HTTP servers: HTTP/1.1 alone.
// Go 1.26.8's HTTP/2 server has known flaws (GO-2026-6617, GO-2026-6612,
// GO-2026-6611, GO-2026-6603: a crash, flow-control and CPU and memory
// exhaustion by a client), and the API server needs none of HTTP/2's
// multiplexing; without HTTP/2 on the server none of them can be reached,
// over plain TCP (h2c) or, should a server ever get TLS, through ALPN.
func HTTP1Only() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}
