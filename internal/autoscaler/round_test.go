package autoscaler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata")

// tracingProvider is a fakeProvider that writes each call it gets to a
// trace, and can be made to fail.
type tracingProvider struct {
	fakeProvider
	trace         *bytes.Buffer
	failLaunch    bool
	failTerminate bool
}

func (p *tracingProvider) Launch(ctx context.Context, t string, n int) error {
	fmt.Fprintf(p.trace, "provider: launch %d of %s\n", n, t)
	if p.failLaunch {
		return errors.New("no room")
	}
	return p.fakeProvider.Launch(ctx, t, n)
}

func (p *tracingProvider) Terminate(ctx context.Context, ids []string) error {
	fmt.Fprintf(p.trace, "provider: terminate %v\n", ids)
	if p.failTerminate {
		return errors.New("refused")
	}
	return p.fakeProvider.Terminate(ctx, ids)
}

// setState sets the state of a provider's instance.
func (p *tracingProvider) setState(id string, s InstanceState) {
	for i := range p.insts {
		if p.insts[i].ID == id {
			p.insts[i].State = s
		}
	}
}

// TestRoundTrace runs a scripted cluster through rounds that exercise
// every step of a round (instances matched to nodes and forgotten,
// instances whose node died, ended or never came terminated, demand from
// pending shapes, unplaced bundles and the standing request, minimums,
// packing, launches, idle nodes drained and released or kept, provider
// errors) and compares what the autoscaler did, in order (provider
// calls, drains, log lines, the status of each round), with
// testdata/round.golden. Any change in a round's behaviour shows as a
// diff; go test -run TestRoundTrace -rewrite writes the file anew.
func TestRoundTrace(t *testing.T) {
	ctx := context.Background()
	var trace bytes.Buffer
	p := roundTraceProvider(&trace)
	s, head := roundTraceStore(ctx)
	a, now := newTest(t, &p.fakeProvider, s, 6)
	a.cfg.Provider = p
	a.log = traceLogger(&trace)
	drainFails := map[string]bool{}
	a.cfg.Drain = func(_ context.Context, n *pb.NodeInfo) error {
		inst := n.Labels[LabelInstance]
		fmt.Fprintf(&trace, "drain %s\n", inst)
		if drainFails[inst] {
			return errors.New("busy")
		}
		return nil
	}
	round := func(what string) {
		t.Helper()
		fmt.Fprintf(&trace, "\n== %s (t+%s)\n", what, now.Sub(time.Unix(1000, 0)))
		err := a.step(ctx)
		fmt.Fprintf(&trace, "step: %v\n", err)
		b, _ := json.MarshalIndent(a.Status(), "", "  ")
		fmt.Fprintf(&trace, "status: %s\ninstances: %v\n", b, p.insts)
	}
	// alive registers a node for an instance.
	alive := func(id byte, inst string, total, avail float64) *pb.NodeInfo {
		n := node(id, inst, res("CPU", total), res("CPU", avail))
		s.nodes = append(s.nodes, n)
		return n
	}

	round("demand on a busy head; a dead node's instance and an ended one")
	round("nothing more launched while the launches come up")
	*now = now.Add(30 * time.Second)
	head.PendingShapes = nil
	s.groups = nil
	n1 := alive(1, "i1", 2, 0)
	n4 := alive(4, "i4", 4, 4)
	alive(2, "i2", 2, 2)
	round("three nodes register, one busy, one never will; demand gone; the request keeps extra")
	*now = now.Add(40 * time.Second)
	n1.Available = res("CPU", 2.0)
	drainFails["i4"] = true
	round("one never came (launch timeout); two idle past the timeout, one drain fails")
	delete(drainFails, "i4")
	p.failTerminate = true
	*now = now.Add(time.Second)
	round("the provider refuses to terminate")
	p.failTerminate = false
	*now = now.Add(time.Second)
	round("released")
	n4.State = "DEAD"
	p.setState("i1", InstanceEnded)
	p.failLaunch = true
	head.PendingShapes = []*pb.ResourceDemand{{Shape: res("CPU", 4.0, "GPU", 1.0), Count: 3}}
	round("an instance ends, demand for GPUs, the provider refuses to launch")
	p.failLaunch = false
	p.types = []NodeType{{Name: "cpu", Resources: map[string]float64{"CPU": 2}, MinWorkers: 3, MaxWorkers: 1}}
	round("new node types refused")

	compareRoundGolden(t, trace.String())
}

// roundTraceProvider returns TestRoundTrace's provider, writing to trace:
// node types cpu and gpu, and instances that died, ended, are stopping,
// and one extra.
func roundTraceProvider(trace *bytes.Buffer) *tracingProvider {
	return &tracingProvider{trace: trace, fakeProvider: fakeProvider{
		types: []NodeType{
			{Name: "cpu", Resources: map[string]float64{"CPU": 2}, MinWorkers: 1, MaxWorkers: 4},
			{Name: "gpu", Resources: map[string]float64{"CPU": 4, "GPU": 1}, MaxWorkers: 2},
		},
		insts: []Instance{
			{ID: "died", NodeType: "cpu", State: InstanceRunning},
			{ID: "ended", NodeType: "gpu", State: InstanceEnded},
			{ID: "stopping", NodeType: "cpu", State: InstanceTerminating},
			{ID: "extra", NodeType: "cpu", State: InstanceRunning},
		},
	}}
}

// roundTraceStore returns TestRoundTrace's control store and its head: a
// busy head with pending shapes, a dead node, the extra instance's node,
// placement groups with unplaced bundles, and a standing request.
func roundTraceStore(ctx context.Context) (*fakeStore, *pb.NodeInfo) {
	deadNode := node(9, "died", res("CPU", 2.0), res("CPU", 2.0))
	deadNode.State = "DEAD"
	head := node(0, "", res("CPU", 4.0), res("CPU", 0.0),
		&pb.ResourceDemand{Shape: res("CPU", 1.0), Count: 9},
		&pb.ResourceDemand{Shape: res("GPU", 1.0), Count: 1})
	s := &fakeStore{
		nodes: []*pb.NodeInfo{head, deadNode, node(5, "extra", res("CPU", 2.0), res("CPU", 2.0))},
		groups: []*pb.PlacementGroup{
			{State: "PENDING", Bundles: []*pb.Bundle{{Resources: res("CPU", 2.0)}, {Resources: res("CPU", 2.0), NodeId: []byte{0}}}},
			{State: "RESCHEDULING", Bundles: []*pb.Bundle{{Resources: res("CPU", 1.0)}}},
			{State: "CREATED", Bundles: []*pb.Bundle{{Resources: res("CPU", 8.0)}}},
		},
	}
	_ = s.KVPut(ctx, Namespace, KeyRequested, EncodeDemands([]*pb.ResourceDemand{{Shape: res("CPU", 2.0), Count: 3}}))
	return s, head
}

// traceLogger is a text logger writing to trace without times.
func traceLogger(trace *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(trace, &slog.HandlerOptions{ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
		if at.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return at
	}}))
}

// compareRoundGolden compares got with testdata/round.golden, after
// writing it there with -rewrite, and shows the first lines that differ.
func compareRoundGolden(t *testing.T, got string) {
	t.Helper()
	path := filepath.Join("testdata", "round.golden")
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestRoundTrace -rewrite writes it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		i := 0
		for i < min(len(gl), len(wl)) && gl[i] == wl[i] {
			i++
		}
		t.Fatalf("the rounds' trace differs from %s from line %d:\ngot:  %q\nwant: %q\n(all of it:\n%s)", path, i+1,
			slices.Concat(gl[i:min(i+5, len(gl))]), slices.Concat(wl[i:min(i+5, len(wl))]), got)
	}
}
