package rpc

import "testing"

func TestEndpointPick(t *testing.T) {
	ep := Endpoint("/tmp/s/w-1.sock", "10.0.0.2:4000", "nodeb")
	if u, tcp, n := SplitEndpoint(ep); u != "/tmp/s/w-1.sock" || tcp != "10.0.0.2:4000" || n != "nodeb" {
		t.Fatalf("split %q: %q %q %q", ep, u, tcp, n)
	}
	for _, c := range []struct{ ep, local, want string }{
		{ep, "nodeb", "/tmp/s/w-1.sock"},                // same node: the Unix socket
		{ep, "nodea", "tcp:10.0.0.2:4000"},              // another node: TCP, even if the path exists here
		{ep, "", "tcp:10.0.0.2:4000"},                   // a process that knows no node
		{"/tmp/s/w-1.sock", "nodea", "/tmp/s/w-1.sock"}, // one machine only
	} {
		if got := Pick(c.ep, c.local); got != c.want {
			t.Errorf("Pick(%q, %q) = %q, want %q", c.ep, c.local, got, c.want)
		}
	}
	if Endpoint("/x.sock", "", "n") != "/x.sock" {
		t.Error("an endpoint without TCP is its path")
	}
}
