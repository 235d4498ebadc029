package dashboard

import (
	"context"
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
}

// Listen serves h at addr (HOST:PORT).
func Listen(addr string, h http.Handler) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen %s: %w", addr, err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &HTTPServer{addr: ln.Addr().String(), done: make(chan struct{}), cancel: cancel}
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
		_ = s.srv.Serve(newLimitListener(ln, maxConns, maxConnsPerHost))
	}()
	return s, nil
}

// Addr is where the server listens (HOST:PORT).
func (s *HTTPServer) Addr() string { return s.addr }

// Close stops the server, ending followed logs, and waits for every
// request to end.
func (s *HTTPServer) Close() error {
	s.cancel()
	err := s.srv.Close()
	<-s.done
	s.reqs.Wait()
	return err
}
