package core

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc"
)

// peerSet holds this process's connections to other processes (owners,
// borrowers, workers, actors) and to other nodes' raylets, each dialed
// once. Its lock is a leaf: nothing else is locked while it is held, and
// no dial happens under it.
type peerSet struct {
	rt      *Runtime
	mu      sync.Mutex             // protects peers, raylets
	peers   map[string]*peerConn   // by endpoint; nil once closed
	raylets map[string]*rayletConn // other nodes' raylets, by TCP address; nil once closed
}

type peerConn struct {
	ready chan struct{}
	conn  *rpc.Conn
	err   error
}

// rayletConn is a connection to another node's raylet, dialed once.
type rayletConn struct {
	ready chan struct{}
	conn  RayletClient
	err   error
}

func newPeerSet(rt *Runtime) *peerSet {
	return &peerSet{rt: rt, peers: make(map[string]*peerConn), raylets: make(map[string]*rayletConn)}
}

// peer returns the connection to a process, dialing it once.
func (ps *peerSet) peer(ctx context.Context, addr string) (*rpc.Conn, error) {
	ps.mu.Lock()
	if ps.peers == nil {
		ps.mu.Unlock()
		return nil, ErrShutdown
	}
	p := ps.peers[addr]
	if p != nil {
		ps.mu.Unlock()
		<-p.ready
		if p.err == nil && p.conn.Err() == nil {
			return p.conn, nil
		}
		ps.mu.Lock()
		if ps.peers[addr] == p {
			delete(ps.peers, addr)
		}
		if p.err != nil {
			ps.mu.Unlock()
			return nil, p.err
		}
		p = ps.peers[addr]
		if p != nil {
			ps.mu.Unlock()
			<-p.ready
			return p.conn, p.err
		}
	}
	if ps.peers == nil {
		ps.mu.Unlock()
		return nil, ErrShutdown
	}
	p = &peerConn{ready: make(chan struct{})}
	ps.peers[addr] = p
	ps.mu.Unlock()
	rt := ps.rt
	p.conn, p.err = rpc.DialEndpoint(ctx, addr, rt.cfg.Node, rt.cfg.Token, rt)
	if p.err != nil {
		ps.mu.Lock()
		if ps.peers[addr] == p {
			delete(ps.peers, addr)
		}
		ps.mu.Unlock()
	}
	close(p.ready)
	return p.conn, p.err
}

// has reports whether a live connection to addr is at hand.
func (ps *peerSet) has(addr string) bool {
	ps.mu.Lock()
	p := ps.peers[addr]
	ps.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.ready:
		return p.err == nil && p.conn.Err() == nil
	default:
		return false
	}
}

// notify sends a one-way message to a process, dialing it if need be.
func (ps *peerSet) notify(addr string, m rpc.Method, msg proto.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := ps.peer(ctx, addr); err == nil {
		_ = c.Notify(m, msg)
	}
}

// raylet returns a client of the raylet at addr (TCP), dialing it the
// first time.
func (ps *peerSet) raylet(ctx context.Context, addr string) (RayletClient, error) {
	rt := ps.rt
	if rt.cfg.DialRaylet == nil {
		return nil, errNoCluster
	}
	ps.mu.Lock()
	if ps.raylets == nil {
		ps.mu.Unlock()
		return nil, ErrShutdown
	}
	r := ps.raylets[addr]
	if r == nil {
		r = &rayletConn{ready: make(chan struct{})}
		ps.raylets[addr] = r
		ps.mu.Unlock()
		r.conn, r.err = rt.cfg.DialRaylet(ctx, addr, rt.pushes)
		close(r.ready)
		if r.err != nil {
			ps.forgetRaylet(addr, r)
		}
		return r.conn, r.err
	}
	ps.mu.Unlock()
	<-r.ready
	return r.conn, r.err
}

// forgetRaylet drops a broken connection so the next use dials again.
func (ps *peerSet) forgetRaylet(addr string, r *rayletConn) {
	ps.mu.Lock()
	if ps.raylets != nil && (r == nil || ps.raylets[addr] == r) {
		delete(ps.raylets, addr)
	}
	ps.mu.Unlock()
}

// closers returns functions that close the connections to the processes
// on the dead nodes and to the raylets at the dead addresses.
func (ps *peerSet) closers(deadNodes, deadAddrs map[string]bool) []func() {
	var out []func()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for ep, p := range ps.peers {
		if _, _, node := rpc.SplitEndpoint(ep); node != "" && deadNodes[node] {
			out = append(out, p.close)
		}
	}
	for addr, r := range ps.raylets {
		if deadAddrs[addr] {
			out = append(out, r.close)
		}
	}
	return out
}

// close refuses new connections from now on and closes every one made.
func (ps *peerSet) close() {
	ps.mu.Lock()
	peers, raylets := ps.peers, ps.raylets
	ps.peers, ps.raylets = nil, nil
	ps.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
	for _, r := range raylets {
		r.close()
	}
}

// close closes the connection once its dial has ended.
func (p *peerConn) close() {
	<-p.ready
	if p.conn != nil {
		_ = p.conn.Close()
	}
}

// close closes the connection once its dial has ended.
func (r *rayletConn) close() {
	<-r.ready
	if c, ok := r.conn.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}
