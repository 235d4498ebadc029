package main

import (
	"errors"
	"fmt"
	"net"
)

// hostAuto is the --host value that stands for this machine's own address,
// as a container, whose address is known only when it runs, needs: a node
// registers the address it listens on, and other nodes dial it there, so
// it cannot be 0.0.0.0.
const hostAuto = "auto"

// errNoAddress says that no interface has an address other nodes could
// reach.
var errNoAddress = errors.New("no network interface is up with an address beyond loopback")

// iface is a network interface's flags and addresses.
type iface struct {
	flags net.Flags
	addrs []net.Addr
}

// resolveHost turns --host auto into the IPv4 address of the first
// interface that is up and not loopback (the first IPv6 one when none has
// IPv4), from the interfaces list returns; any other value is returned as
// it is.
func resolveHost(host string, list func() ([]iface, error)) (string, error) {
	if host != hostAuto {
		return host, nil
	}
	ifaces, err := list()
	if err != nil {
		return "", fmt.Errorf("--host auto: %w", err)
	}
	var v6 string
	for _, i := range ifaces {
		if i.flags&net.FlagUp == 0 || i.flags&net.FlagLoopback != 0 {
			continue
		}
		for _, a := range i.addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			if ip4 := ipn.IP.To4(); ip4 != nil {
				return ip4.String(), nil
			}
			if v6 == "" {
				v6 = ipn.IP.String()
			}
		}
	}
	if v6 != "" {
		return v6, nil
	}
	return "", fmt.Errorf("--host auto: %w", errNoAddress)
}

// systemInterfaces lists this machine's network interfaces.
func systemInterfaces() ([]iface, error) {
	list, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]iface, 0, len(list))
	for _, i := range list {
		addrs, err := i.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", i.Name, err)
		}
		out = append(out, iface{flags: i.Flags, addrs: addrs})
	}
	return out, nil
}
