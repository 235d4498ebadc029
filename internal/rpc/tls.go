package rpc

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rayo-dev/rayo/internal/pki"
)

// MEnroll asks the control store for a certificate: a peer that presented
// the token over TLS, without a certificate of its own, sends a
// certificate request (wrapperspb.BytesValue, DER) and gets back its
// certificate and the CA's (raw PEM).
const MEnroll Method = 254

// ErrTLSRequired is how a TLS listener answers a peer that speaks in
// clear.
var ErrTLSRequired = errors.New("rpc: connection refused: this server accepts TLS only (the peer has TLS off: is it started with --tls=false?)")

// errEnrollOnly refuses a peer without a certificate anything but MEnroll.
var errEnrollOnly = errors.New("rpc: a peer without a certificate of the cluster may only enroll")

// TLS is how a process protects its TCP links (Unix sockets stay in
// clear: they join processes of one user on one machine).
type TLS struct {
	// Server is a TCP listener's configuration; Client a dial's. Nil: in
	// clear.
	Server *tls.Config
	Client *tls.Config
	// Enroll, when set, signs the certificate request (DER) of a peer that
	// presented the token but no certificate, returning the certificate
	// and the CA's as PEM. Only the cluster's control store has it.
	Enroll func(request []byte) ([]byte, error)
}

// NewTLS is the TLS of a process holding creds: mutual TLS 1.3, and
// enrollment of joining nodes when creds hold the CA's key.
func NewTLS(creds *pki.Credentials) *TLS {
	t := &TLS{Server: creds.ServerConfig(creds.Issuer != nil), Client: creds.ClientConfig()}
	if ca := creds.Issuer; ca != nil {
		t.Enroll = func(req []byte) ([]byte, error) {
			der, err := ca.Sign(req)
			if err != nil {
				return nil, err
			}
			return append(pemCert(der), pki.PEM(ca.Cert)...), nil
		}
	}
	return t
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

var defaultTLS atomic.Pointer[TLS]

// SetDefaultTLS makes t the TLS of this process's TCP links: of servers
// made afterwards on TCP listeners, and of DialToken and DialEndpoint. A
// process has one identity in its cluster, set once at its start (a
// node's daemon, a driver, a worker); nil turns TLS off.
func SetDefaultTLS(t *TLS) { defaultTLS.Store(t) }

// DefaultTLS is what SetDefaultTLS set, or nil.
func DefaultTLS() *TLS { return defaultTLS.Load() }

// UseTLS makes the server speak TLS with t (nil: in clear), for the
// connections it accepts from now on. A server on a TCP listener starts
// with DefaultTLS.
func (s *Server) UseTLS(t *TLS) {
	s.mu.Lock()
	s.tls = t
	s.mu.Unlock()
}

func isTCP(ln net.Listener) bool {
	n := ln.Addr().Network()
	return n == "tcp" || n == "tcp4" || n == "tcp6"
}

// tlsRecordHandshake is the first byte of a TLS connection (a handshake
// record); a frame of this protocol starts with its length's top byte,
// 0 for every frame a peer may send first.
const tlsRecordHandshake = 0x16

// upgrade runs the TLS handshake of an accepted connection, within the
// handshake timeout, and then serves it. A peer that speaks in clear gets
// ErrTLSRequired in answer to its first request, and is closed.
func (s *Server) upgrade(nc net.Conn, t *TLS, timeout time.Duration, preAuth bool, admitted func()) {
	fail := func() {
		_ = nc.Close()
		if admitted != nil {
			admitted()
		}
		s.mu.Lock()
		delete(s.handshaking, nc)
		s.mu.Unlock()
		s.wg.Done()
	}
	deadline := time.Now().Add(timeout)
	_ = nc.SetDeadline(deadline)
	var first [1]byte
	if _, err := io.ReadFull(nc, first[:]); err != nil {
		fail()
		return
	}
	if first[0] != tlsRecordHandshake {
		refuseClear(nc, first[0])
		fail()
		return
	}
	tc := tls.Server(newTLSSocket(&prefixConn{Conn: nc, first: first[:]}, false), t.Server)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		fail()
		return
	}
	_ = nc.SetWriteDeadline(time.Time{})
	if !preAuth {
		_ = nc.SetReadDeadline(time.Time{})
	}
	enrollOnly := len(tc.ConnectionState().PeerCertificates) == 0
	s.mu.Lock()
	delete(s.handshaking, nc)
	if s.closed || (enrollOnly && (t.Enroll == nil || !preAuth)) {
		s.mu.Unlock()
		_ = tc.Close()
		if admitted != nil {
			admitted()
		}
		s.wg.Done()
		return
	}
	s.serveLocked(tc, preAuth, admitted, t, enrollOnly)
	s.mu.Unlock()
}

// refuseClear answers the first request of a peer that speaks in clear
// with ErrTLSRequired: it reads the rest of the frame's header (first is
// its first byte) and replies to its id.
func refuseClear(nc net.Conn, first byte) {
	var hdr [headerLen]byte
	hdr[0] = first
	if _, err := io.ReadFull(nc, hdr[1:]); err != nil {
		return
	}
	if Kind(hdr[5]) != KindRequest {
		return
	}
	msg := ErrTLSRequired.Error()
	out := make([]byte, headerLen, headerLen+len(msg))
	binary.BigEndian.PutUint32(out[0:4], uint32(headerLen-4+len(msg)))
	out[5] = byte(KindError)
	copy(out[6:14], hdr[6:14])
	_, _ = nc.Write(append(out, msg...))
}

// prefixConn gives back the bytes read to tell TLS from clear.
type prefixConn struct {
	net.Conn
	first []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.first) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// ClientTLS runs the client side of a TLS handshake on nc, a connection
// just dialed to addr, with the process's DefaultTLS; without one, nc is
// returned as it is.
func ClientTLS(ctx context.Context, nc net.Conn, addr string) (net.Conn, error) {
	return clientTLS(ctx, nc, addr, DefaultTLS())
}

func clientTLS(ctx context.Context, nc net.Conn, addr string, t *TLS) (net.Conn, error) {
	if t == nil || t.Client == nil {
		return nc, nil
	}
	return handshake(ctx, nc, addr, t.Client)
}

func handshake(ctx context.Context, nc net.Conn, addr string, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Client(newTLSSocket(nc, true), cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("rpc: TLS handshake with %s: %w (does the peer speak TLS? one started with --tls=false does not)", addr, err)
		}
		return nil, fmt.Errorf("rpc: TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// DialTLS connects to addr and presents the cluster's token; over TCP,
// with t (nil: in clear), after the TLS handshake, so that the token goes
// only to a server whose certificate t trusts.
func DialTLS(ctx context.Context, addr, token string, t *TLS, h Handler, onClose ...func(error)) (*Conn, error) {
	nc, err := dialSocket(ctx, addr, t)
	if err != nil {
		return nil, err
	}
	c := NewConn(nc, h, onClose...)
	if err := Hello(ctx, c, addr, token); err != nil {
		return nil, err
	}
	return c, nil
}

// Enroll gets this node a certificate from the control store at addr
// (HOST:PORT), with a join token (see package pki): it dials TLS pinned to
// the token's CA fingerprint, and only then presents the secret. name and
// hosts go into the certificate.
func Enroll(ctx context.Context, addr, joinToken, name string, hosts []string) (*pki.Credentials, error) {
	fp, secret, err := pki.ParseToken(joinToken)
	if err != nil {
		return nil, err
	}
	if fp == "" {
		return nil, errors.New("rpc: enroll: the token pins no CA; a node joins over TLS with the join token (K10<fingerprint>::<secret>) its head printed")
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	tc, err := handshake(ctx, nc, addr, pki.PinnedConfig(fp))
	if err != nil {
		return nil, err
	}
	c := NewConn(tc, nil)
	defer c.Close()
	if err := Hello(ctx, c, addr, secret); err != nil {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	req, err := pki.NewRequest(key, name, hosts)
	if err != nil {
		return nil, err
	}
	body, err := c.CallRaw(ctx, MEnroll, wrapperspb.Bytes(req))
	if err != nil {
		return nil, fmt.Errorf("rpc: enroll at %s: %w", addr, err)
	}
	chain, err := pki.ParseChain(body)
	if err != nil {
		return nil, fmt.Errorf("rpc: enroll at %s: %w", addr, err)
	}
	ca := chain[len(chain)-1]
	if len(chain) < 2 || pki.Fingerprint(ca) != fp {
		return nil, fmt.Errorf("rpc: enroll at %s: %w", addr, pki.ErrFingerprint)
	}
	return pki.Assemble(key, chain[0].Raw, ca)
}

// handleEnroll serves MEnroll on a connection whose peer said the token.
func handleEnroll(c *Conn, enroll func([]byte) ([]byte, error), kind Kind, id uint64, body []byte) {
	if kind != KindRequest {
		return
	}
	req := &wrapperspb.BytesValue{}
	if err := proto.Unmarshal(body, req); err != nil {
		_ = c.ReplyError(id, fmt.Sprintf("rpc: enroll: %v", err))
		return
	}
	chain, err := enroll(req.Value)
	if err != nil {
		_ = c.ReplyError(id, fmt.Sprintf("rpc: enroll: %v", err))
		return
	}
	_ = c.ReplyRaw(id, chain)
}

// tlsOf is the TLS state of a connection's socket, or nil in clear.
func tlsOf(nc net.Conn) *tls.ConnectionState {
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}

// TLSState is the connection's TLS state (version, peer's certificates),
// or nil for a connection in clear.
func (c *Conn) TLSState() *tls.ConnectionState { return tlsOf(c.nc) }

// tlsSocket is the socket under a TLS connection. TLS reads and writes a
// record (16 KiB) at a time; tlsSocket makes a busy connection read many
// records per system call (through a frameReader, whose large buffer it
// borrows only once the peer has authenticated) and, while its rpc.Conn
// writes a batch of frames (hold ... release), write many per system
// call.
type tlsSocket struct {
	net.Conn
	fr   *frameReader
	conn atomic.Pointer[Conn] // the rpc connection on top, once it exists

	wmu     sync.Mutex // protects holding, wbuf
	holding bool
	wbuf    *[]byte // borrowed from writeBatches while holding
}

// writeBatch is how many bytes of records a held tlsSocket gathers before
// it writes them out.
const writeBatch = 256 << 10

var writeBatches = sync.Pool{New: func() any { b := make([]byte, 0, writeBatch+32<<10); return &b }}

// newTLSSocket wraps the socket of a connection this process dialed
// (client) or accepted: the latter borrows a large read buffer only once
// its peer has authenticated.
func newTLSSocket(nc net.Conn, client bool) *tlsSocket {
	s := &tlsSocket{Conn: nc}
	s.fr = newFrameReader(nc)
	if !client {
		s.fr.mayBorrow = func() bool {
			c := s.conn.Load()
			return c != nil && !c.preAuth.Load()
		}
	}
	return s
}

func (s *tlsSocket) Read(p []byte) (int, error) {
	f := s.fr
	if f.r == f.w {
		if err := f.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.buf[f.r:f.w])
	f.r += n
	return n, nil
}

func (s *tlsSocket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	if !s.holding && s.wbuf == nil {
		s.wmu.Unlock()
		return s.Conn.Write(p)
	}
	if s.wbuf == nil {
		s.wbuf = writeBatches.Get().(*[]byte)
	}
	*s.wbuf = append(*s.wbuf, p...)
	var err error
	if len(*s.wbuf) >= writeBatch {
		err = s.flushLocked()
	}
	s.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushLocked writes what is gathered; it is called with wmu held.
func (s *tlsSocket) flushLocked() error {
	if s.wbuf == nil {
		return nil
	}
	_, err := s.Conn.Write(*s.wbuf)
	*s.wbuf = (*s.wbuf)[:0]
	return err
}

// hold gathers the records written until release.
func (s *tlsSocket) hold() {
	s.wmu.Lock()
	s.holding = true
	s.wmu.Unlock()
}

// release writes the gathered records out.
func (s *tlsSocket) release() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.holding = false
	err := s.flushLocked()
	if s.wbuf != nil {
		writeBatches.Put(s.wbuf)
		s.wbuf = nil
	}
	return err
}

// socketOf is the tlsSocket under a connection, or nil.
func socketOf(nc net.Conn) *tlsSocket {
	if tc, ok := nc.(*tls.Conn); ok {
		s, _ := tc.NetConn().(*tlsSocket)
		return s
	}
	return nil
}
