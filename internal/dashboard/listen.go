package dashboard

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPServer is the API server listening on a port.
type HTTPServer struct {
	srv    *http.Server
	addr   string
	done   chan struct{}
	cancel context.CancelFunc
	reqs   sync.WaitGroup // requests being served (a followed log lasts)
	tls    bool           // it serves HTTPS
}

// Listen serves h at addr (HOST:PORT), in clear.
func Listen(addr string, h http.Handler) (*HTTPServer, error) {
	return ListenTLS(addr, h, nil)
}

// ListenTLS serves h at addr (HOST:PORT) over TLS with tc (nil: in
// clear): HTTPS, HTTP/1.1 only.
func ListenTLS(addr string, h http.Handler, tc *tls.Config) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen %s: %w", addr, err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &HTTPServer{addr: ln.Addr().String(), done: make(chan struct{}), cancel: cancel, tls: tc != nil}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.reqs.Add(1)
			defer s.reqs.Done()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		Protocols:         HTTP1Only(),
	}
	go func() {
		defer close(s.done)
		var l net.Listener = newLimitListener(ln, maxConns, maxConnsPerHost)
		if tc != nil {
			tc = tc.Clone()
			tc.NextProtos = []string{"http/1.1"}
			// The handshake counts against the header timeout (the
			// server sets a deadline before it), within the caps above.
			l = tls.NewListener(l, tc)
		}
		_ = s.srv.Serve(l)
	}()
	return s, nil
}

// Addr is where the server listens (HOST:PORT).
func (s *HTTPServer) Addr() string { return s.addr }

// URL is the server's base URL: https://HOST:PORT over TLS, else
// http://HOST:PORT.
func (s *HTTPServer) URL() string {
	if s.tls {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// Close stops the server, ending followed logs, and waits for every
// request to end.
func (s *HTTPServer) Close() error {
	s.cancel()
	err := s.srv.Close()
	<-s.done
	s.reqs.Wait()
	return err
}
