package dashboard

import (
	"net"
	"sync"
)

// Bounds on the API server's open connections: a peer past its share is
// closed at once, so one host that opens sockets without end neither
// exhausts the server's memory and descriptors nor locks others out.
const (
	maxConns        = 1024 // in all
	maxConnsPerHost = 128  // from one IP address
)

// limitListener accepts connections within maxConns in all and perHost
// from each IP address, closing the others as soon as they are accepted.
type limitListener struct {
	net.Listener
	total, perHost int

	mu     sync.Mutex
	open   int
	byHost map[string]int
}

func newLimitListener(ln net.Listener, total, perHost int) *limitListener {
	return &limitListener{Listener: ln, total: total, perHost: perHost, byHost: make(map[string]int)}
}

// Accept returns the next connection within the bounds.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		ok := l.open < l.total && l.byHost[host] < l.perHost
		if ok {
			l.open++
			l.byHost[host]++
		}
		l.mu.Unlock()
		if !ok {
			_ = c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l, host: host}, nil
	}
}

func (l *limitListener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byHost[host]--; l.byHost[host] <= 0 {
		delete(l.byHost, host)
	}
}

// limitedConn gives its place back when closed, once.
type limitedConn struct {
	net.Conn
	l    *limitListener
	host string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.host) })
	return err
}
