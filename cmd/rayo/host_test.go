package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func ipNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

func TestResolveHost(t *testing.T) {
	up, lo := net.FlagUp, net.FlagUp|net.FlagLoopback
	tests := []struct {
		name   string
		host   string
		ifaces []iface
		want   string
		err    error
	}{
		{"any other value is kept", "0.0.0.0", nil, "0.0.0.0", nil},
		{"loopback and down interfaces are passed over", "auto", []iface{
			{flags: lo, addrs: []net.Addr{ipNet("127.0.0.1/8")}},
			{flags: 0, addrs: []net.Addr{ipNet("10.0.0.9/24")}},
			{flags: up, addrs: []net.Addr{ipNet("fe80::1/64"), ipNet("10.1.2.3/16")}},
		}, "10.1.2.3", nil},
		{"IPv4 before IPv6", "auto", []iface{
			{flags: up, addrs: []net.Addr{ipNet("2001:db8::5/64")}},
			{flags: up, addrs: []net.Addr{ipNet("192.168.1.7/24")}},
		}, "192.168.1.7", nil},
		{"IPv6 when there is no IPv4", "auto", []iface{
			{flags: up, addrs: []net.Addr{ipNet("2001:db8::5/64")}},
		}, "2001:db8::5", nil},
		{"only loopback", "auto", []iface{
			{flags: lo, addrs: []net.Addr{ipNet("127.0.0.1/8")}},
		}, "", errNoAddress},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveHost(tc.host, func() ([]iface, error) { return tc.ifaces, nil })
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
	if _, err := resolveHost("auto", func() ([]iface, error) { return nil, fmt.Errorf("netlink refused") }); err == nil || !strings.Contains(err.Error(), "netlink refused") {
		t.Errorf("a failing interface list: %v", err)
	}
}

// TestStartHostAuto: a head started with --host auto registers this
// machine's address, which other nodes can dial, and listens there.
func TestStartHostAuto(t *testing.T) {
	want, err := resolveHost(hostAuto, systemInterfaces)
	if err != nil {
		t.Fatalf("this machine has no address beyond loopback for the test: %v", err)
	}
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	port, rayletPort := freePort(t), freePort(t)
	e.daemonEnv(t, []string{"RAYO_HOST=auto"}, "start", "--head", "--port", strconv.Itoa(port), "--dashboard-port", "0",
		"--num-cpus", "1", "--raylet-port", strconv.Itoa(rayletPort))
	addr := net.JoinHostPort(want, strconv.Itoa(port))
	var st status
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err = e.status("--address", addr)
		if err == nil && count(st, "ALIVE") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no head at %s: %+v %v", addr, st, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a daemon in another process
	}
	if got, want := st.Nodes[0].Address, net.JoinHostPort(want, strconv.Itoa(rayletPort)); got != want {
		t.Errorf("the node registered %s, want %s", got, want)
	}
}
