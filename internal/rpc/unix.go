package rpc

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Unix sockets carry no token: the raylet's and the drivers' sockets are
// reached by this machine's processes, which the kernel names. ListenUnix
// lets only this user's reach them, twice over: the socket file is 0600
// (whatever the umask), and each connection's peer credentials
// (SO_PEERCRED) must be this user's or root's, so a socket a loose umask or
// a shared folder exposes still serves nobody else.

// ListenUnix listens on a Unix socket at path that only this user (and
// root) may use: connections from processes of other users are closed as
// soon as they are accepted.
func ListenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("rpc: socket %s: %w", path, err)
	}
	return &sameUserListener{Listener: ln, uid: os.Getuid()}, nil
}

// sameUserListener accepts the connections of processes of uid or root.
type sameUserListener struct {
	net.Listener
	uid int
}

// Accept returns the next connection whose peer runs as the listener's
// user or as root, closing the others.
func (l *sameUserListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if uid, ok := peerUID(c); ok && (uid == l.uid || uid == 0) {
			return c, nil
		}
		_ = c.Close()
	}
}

// peerUID is the user of the process at the other end of a Unix socket.
func peerUID(c net.Conn) (int, bool) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, false
	}
	uid, found := 0, false
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid, found = int(cred.Uid), true
		}
	})
	return uid, found
}
