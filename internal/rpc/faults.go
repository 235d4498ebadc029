package rpc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Fault injection, for tests of how the system copes with lost messages
// (after Ray's RAY_testing_rpc_failure). The environment variable
// EnvRPCFailure lists methods with two probabilities each:
//
//	RAYO_TESTING_RPC_FAILURE="PushTask=0.1:0.05,GetObject=0.02:0"
//
// A request of that method (Go, Call, CallRaw) is then dropped before it
// is sent with the first probability, and its reply, once the peer has
// acted on the request, with the second: either way the caller gets an
// error wrapping ErrInjected, as when a connection breaks. "*" names every
// method. Notifications are never dropped. The variable is read once, when
// the process starts; a malformed value is reported on standard error and
// injects nothing.

// EnvRPCFailure names the environment variable that injects failures.
const EnvRPCFailure = "RAYO_TESTING_RPC_FAILURE"

// ErrInjected is the error of a request or reply that EnvRPCFailure
// dropped.
var ErrInjected = errors.New("rpc: failure injected for testing (" + EnvRPCFailure + ")")

// Faults says, per method, how often requests and replies are dropped.
type Faults struct {
	drop [256]struct{ req, resp float64 }
}

// activeFaults is what this process injects; nil: nothing (the rule).
var activeFaults atomic.Pointer[Faults]

// injectedRequests and injectedReplies count what this process dropped.
var injectedRequests, injectedReplies atomic.Int64

func init() {
	spec := os.Getenv(EnvRPCFailure)
	if spec == "" {
		return
	}
	f, err := ParseFaults(spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rayo: %s ignored: %v\n", EnvRPCFailure, err)
		return
	}
	activeFaults.Store(f)
}

// ParseFaults reads a list of METHOD=REQUEST:REPLY probabilities (see
// EnvRPCFailure). METHOD is a method's name, as Method.String gives it, or
// "*" for all.
func ParseFaults(spec string) (*Faults, error) {
	f := &Faults{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, probs, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("rpc: fault %q: want METHOD=REQUEST:REPLY", item)
		}
		rs, ps, ok := strings.Cut(probs, ":")
		if !ok {
			return nil, fmt.Errorf("rpc: fault %q: want two probabilities, REQUEST:REPLY", item)
		}
		req, err1 := strconv.ParseFloat(rs, 64)
		resp, err2 := strconv.ParseFloat(ps, 64)
		if err1 != nil || err2 != nil || req < 0 || req > 1 || resp < 0 || resp > 1 {
			return nil, fmt.Errorf("rpc: fault %q: probabilities must be numbers from 0 to 1", item)
		}
		found := false
		for m := 1; m < len(methods); m++ {
			if methods[m].name != "" && (name == "*" || methods[m].name == name) {
				f.drop[m].req, f.drop[m].resp = req, resp
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("rpc: fault %q: no method is named %q", item, name)
		}
	}
	return f, nil
}

// SetFaults makes this process inject f from now on (nil: nothing), as
// EnvRPCFailure does at start; for tests.
func SetFaults(f *Faults) { activeFaults.Store(f) }

// InjectedFaults counts the requests and the replies this process has
// dropped.
func InjectedFaults() (requests, replies int64) {
	return injectedRequests.Load(), injectedReplies.Load()
}

// inject decides the fate of one request of method m: dropped (the caller
// fails it), or sent with cb, which may be wrapped to drop the reply.
func (f *Faults) inject(m Method, cb Callback) (dropped bool, out Callback) {
	d := f.drop[m]
	if d.req > 0 && rand.Float64() < d.req {
		injectedRequests.Add(1)
		return true, cb
	}
	if d.resp > 0 && rand.Float64() < d.resp {
		return false, func(body []byte, err error) {
			if err == nil {
				injectedReplies.Add(1)
				err = fmt.Errorf("%w: the reply to %s was dropped", ErrInjected, m)
			}
			cb(nil, err)
		}
	}
	return false, cb
}
