package rpc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Malformed fault lists are refused with a clear error.
func TestParseFaultsRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"PushTask", "want METHOD=REQUEST:REPLY"},
		{"PushTask=0.5", "two probabilities"},
		{"PushTask=x:0", "numbers from 0 to 1"},
		{"PushTask=0:1.5", "numbers from 0 to 1"},
		{"PushTask=-0.1:0", "numbers from 0 to 1"},
		{"NoSuchMethod=0.1:0.1", `no method is named "NoSuchMethod"`},
	} {
		if _, err := ParseFaults(tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFaults(%q) = %v, want an error saying %q", tc.spec, err, tc.want)
		}
	}
	f, err := ParseFaults(" PushTask=0.25:0.5 , GetObject=1:0,")
	if err != nil {
		t.Fatal(err)
	}
	if d := f.drop[MPushTask]; d.req != 0.25 || d.resp != 0.5 {
		t.Errorf("PushTask: %+v", d)
	}
	if d := f.drop[MGetObject]; d.req != 1 || d.resp != 0 {
		t.Errorf("GetObject: %+v", d)
	}
	if d := f.drop[MRequestLease]; d.req != 0 || d.resp != 0 {
		t.Errorf("RequestLease, not listed: %+v", d)
	}
	all, err := ParseFaults("*=0.1:0.2")
	if err != nil || all.drop[MKVGet].req != 0.1 || all.drop[MPushTask].resp != 0.2 {
		t.Fatalf("*: %v", err)
	}
}

// A dropped request never reaches the peer; a dropped reply does, after
// the peer acted on the request; either way the caller gets ErrInjected.
// Other methods are untouched.
func TestFaultsDropRequestsAndReplies(t *testing.T) {
	methods[mEcho].name = "Echo" // the test's method, named so that faults can list it
	t.Cleanup(func() { methods[mEcho].name = "" })
	var served atomic.Int32
	c, _ := pair(t, HandlerFunc(func(c *Conn, m Method, kind Kind, id uint64, body []byte) {
		served.Add(1)
		echo(c, m, kind, id, body)
	}))
	ctx := context.Background()
	call := func() error { return c.Call(ctx, mEcho, &pb.Status{Error: "x"}, &pb.Status{}) }
	t.Cleanup(func() { SetFaults(nil) })

	req0, resp0 := InjectedFaults()
	f, err := ParseFaults("Echo=1:0")
	if err != nil {
		t.Fatal(err)
	}
	SetFaults(f)
	if err := call(); !errors.Is(err, ErrInjected) || !strings.Contains(err.Error(), "request Echo was dropped") {
		t.Fatalf("call with its request dropped = %v", err)
	}
	if n := served.Load(); n != 0 {
		t.Fatalf("the peer served %d dropped requests", n)
	}

	f, _ = ParseFaults("Echo=0:1")
	SetFaults(f)
	if err := call(); !errors.Is(err, ErrInjected) || !strings.Contains(err.Error(), "reply to Echo was dropped") {
		t.Fatalf("call with its reply dropped = %v", err)
	}
	if n := served.Load(); n != 1 {
		t.Fatalf("the peer served %d requests whose reply was dropped, want 1", n)
	}
	if req, resp := InjectedFaults(); req-req0 != 1 || resp-resp0 != 1 {
		t.Fatalf("injected %d requests and %d replies, want 1 and 1", req-req0, resp-resp0)
	}

	f, _ = ParseFaults("PushTask=1:1")
	SetFaults(f)
	if err := call(); err != nil {
		t.Fatalf("a method not listed failed: %v", err)
	}
	SetFaults(nil)
	if err := call(); err != nil {
		t.Fatal(err)
	}
}

// The environment variable is read when the process starts; a malformed
// one is reported and injects nothing.
func TestFaultsFromEnvironment(t *testing.T) {
	if os.Getenv("RPC_FAULTS_CHILD") == "1" {
		f := activeFaults.Load()
		switch os.Getenv(EnvRPCFailure) {
		case "PushTask=0.5:0.25":
			if f == nil || f.drop[MPushTask].req != 0.5 || f.drop[MPushTask].resp != 0.25 {
				t.Fatalf("faults from the environment: %+v", f)
			}
		default:
			if f != nil {
				t.Fatal("a malformed value injects faults")
			}
		}
		return
	}
	for _, spec := range []string{"PushTask=0.5:0.25", "PushTask=2:0"} {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestFaultsFromEnvironment$", "-test.count=1")
		cmd.Env = append(os.Environ(), "RPC_FAULTS_CHILD=1", EnvRPCFailure+"="+spec)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child with %s=%q: %v\n%s", EnvRPCFailure, spec, err, out)
		}
		if spec == "PushTask=2:0" && !strings.Contains(string(out), EnvRPCFailure+" ignored: rpc: fault") {
			t.Fatalf("a malformed %s is not reported:\n%s", EnvRPCFailure, out)
		}
	}
}
