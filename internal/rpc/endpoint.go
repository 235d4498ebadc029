package rpc

import (
	"context"
	"strings"
)

// An endpoint is how a process that serves peers (a driver or a worker) is
// named in refs, specs and leases. On one machine it is the path of its
// Unix socket. In a cluster it also carries a TCP address for other nodes
// and the node it runs on:
//
//	/tmp/rayo/s-1/w-42.sock|10.0.0.2:40123|3fa9c2d1
//
// The whole string is the process's identity; Pick chooses how to reach it.

// Endpoint joins a Unix socket path, a TCP address and a node name.
func Endpoint(unix, tcp, node string) string {
	if tcp == "" {
		return unix
	}
	return unix + "|" + tcp + "|" + node
}

// SplitEndpoint is the inverse of Endpoint.
func SplitEndpoint(ep string) (unix, tcp, node string) {
	parts := strings.SplitN(ep, "|", 3)
	switch len(parts) {
	case 3:
		return parts[0], parts[1], parts[2]
	case 2:
		return parts[0], parts[1], ""
	}
	return ep, "", ""
}

// Pick is the address to dial ep from a process on localNode: the Unix
// socket on the same node, TCP from any other. (Unix sockets cross network
// namespaces, so the node decides, not whether the path exists.)
func Pick(ep, localNode string) string {
	unix, tcp, node := SplitEndpoint(ep)
	if tcp == "" || (node != "" && node == localNode) {
		return unix
	}
	return "tcp:" + tcp
}

// DialEndpoint connects to ep from localNode, presenting token over TCP.
func DialEndpoint(ctx context.Context, ep, localNode, token string, h Handler, onClose ...func(error)) (*Conn, error) {
	addr := Pick(ep, localNode)
	if strings.HasPrefix(addr, "tcp:") {
		return DialToken(ctx, addr, token, h, onClose...)
	}
	return Dial(ctx, addr, h, onClose...)
}
