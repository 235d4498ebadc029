// Command mn is the driver of the multi-node tests: each mode exercises one
// behaviour and prints key=value lines for the test to check.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/internal/testcluster/pattern"
)

var whereSlow = rayo.Func1(func(ms int) string {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return rayo.NodeID()
})

var where = rayo.Func0(func() string { return rayo.NodeID() })

// meetNodes marks in dir that a task runs on this node, then waits (up to
// 30 s) until tasks have run on want nodes, and says where it ran: SPREAD
// tasks that wait so finish only once SPREAD has placed them over want
// nodes, however slowly the other nodes start their workers.
var meetNodes = rayo.Func2E(func(dir string, want int) (string, error) {
	node := rayo.NodeID()
	if err := os.WriteFile(filepath.Join(dir, node), nil, 0o644); err != nil {
		return "", err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if seen, err := os.ReadDir(dir); err == nil && len(seen) >= want {
			break
		}
	}
	return node, nil
})

// lenWhere is where a task reading xs ran.
var lenWhere = rayo.Func1(func(xs []float64) string { return fmt.Sprint(len(xs)) + "@" + rayo.NodeID() })

var fill = rayo.Func2(func(n int, v float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
})

var scaled = rayo.Func2(func(xs []float64, k float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * k
	}
	return out
})

var sum = rayo.Func1(func(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
})

// marked writes a file named after the task's node in dir, then sleeps.
var marked = rayo.Func2(func(dir string, ms int) string {
	_ = os.WriteFile(filepath.Join(dir, rayo.NodeID()+"-"+fmt.Sprint(os.Getpid())), nil, 0o644)
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return rayo.NodeID()
})

// Square is a result of the outage mode's tasks: X*X, and where it ran.
type Square struct {
	V    int
	Node string
}

// slowSquare writes a file named after the task's node and x in dir,
// sleeps ms, and squares x.
var slowSquare = rayo.Func3(func(dir string, ms, x int) Square {
	_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", rayo.NodeID(), x)), nil, 0o644)
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return Square{x * x, rayo.NodeID()}
})

type Counter struct{ N int }

// Count is a counter's value and the node that counted.
type Count struct {
	N    int
	Node string
}

func (c *Counter) Incr() Count { c.N++; return Count{c.N, rayo.NodeID()} }

var newCounter = rayo.Actor0(func() *Counter { return &Counter{} })
var incr = rayo.Method0(newCounter, (*Counter).Incr)

func main() {
	var opts []rayo.Option
	if f := os.Getenv("MN_TLS_FILES"); f != "" { // certificate,key,CA
		p := strings.Split(f, ",")
		opts = append(opts, rayo.TLSFiles(p[0], p[1], p[2]))
	}
	if err := rayo.Init(opts...); err != nil {
		fmt.Println("init_err=" + err.Error())
		os.Exit(1)
	}
	defer rayo.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Println("err=" + err.Error())
		rayo.Shutdown()
		os.Exit(1)
	}
}

// crcAt is the checksum of b, and where it was computed.
var crcAt = rayo.Func1(func(b []byte) string { return fmt.Sprintf("%08x@%s", crc32.ChecksumIEEE(b), rayo.NodeID()) })

// hog allocates and touches memory, 8 MiB at a time, up to 640 MiB.
var hog = rayo.Func0(func() int {
	var keep [][]byte
	for len(keep) < 80 {
		b := make([]byte, 8<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
		time.Sleep(40 * time.Millisecond) // at a pace the memory monitor's sampling follows
	}
	return len(keep)
})

func run(ctx context.Context, mode string, args []string) error {
	switch mode {
	case "oom":
		return oomMode(ctx, args)
	case "spill":
		return spillMode(ctx, args)
	case "spread":
		ran, err := spreadOver(ctx, 9)
		if err != nil {
			return err
		}
		fmt.Println("nodes=" + ran)
	case "busy":
		return busyMode(ctx)
	case "affinity":
		return affinityMode(ctx, args)
	case "resources":
		return resourcesMode(ctx)
	case "objects":
		return objectsMode(ctx, args)
	case "locality":
		return localityMode(ctx, args)
	case "pg":
		return placementGroups(ctx)
	case "pg-leave":
		return pgLeaveMode(ctx)
	case "pg-death":
		return placementGroupDeath(ctx, args[0])
	case "failover":
		return failoverMode(ctx, args)
	case "actor":
		return actorMode(ctx, args)
	case "lineage":
		return lineageMode(ctx, args)
	case "outage":
		return outageMode(ctx, args)
	case "outage-check":
		return outageCheckMode(ctx)
	case "fence-work", "fence-victim":
		return fenceMode(ctx, mode, args) // fence.go
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return nil
}

// oomMode runs a task that eats memory on node args[0], whose memory
// monitor kills it: this owner, on another node, is told why.
func oomMode(ctx context.Context, args []string) error {
	_, err := rayo.Get(ctx, hog.Options(rayo.NodeAffinity(args[0], false), rayo.MaxRetries(1)).Remote())
	fmt.Printf("oom=%v\n", errors.Is(err, rayo.ErrOutOfMemory))
	fmt.Printf("oom_err=%q\n", fmt.Sprint(err))
	after, err := rayo.Get(ctx, where.Options(rayo.NodeAffinity(args[0], false)).Remote())
	if err != nil {
		return err
	}
	fmt.Println("after=" + after)
	return nil
}

// spillMode puts 512 MiB of live 8 MiB objects in this node's 64 MiB
// store: most spill. Each is read by a task on node args[0] (pulled, from
// disk when spilled) and read back here; every checksum must match.
func spillMode(ctx context.Context, args []string) error {
	const n, size = 64, 8 << 20
	refs := make([]rayo.Ref[[]byte], n)
	sums := make([]string, n)
	for i := range refs {
		b := pattern.Bytes(size, uint64(i))
		sums[i] = fmt.Sprintf("%08x", crc32.ChecksumIEEE(b))
		if refs[i] = rayo.Put(ctx, b); refs[i].Err() != nil {
			return refs[i].Err()
		}
	}
	remote := make([]rayo.Ref[string], n)
	for i, r := range refs {
		remote[i] = crcAt.Options(rayo.NodeAffinity(args[0], false)).Remote(r)
	}
	mismatches, away := 0, 0
	for i := range refs {
		got, err := rayo.Get(ctx, remote[i])
		if err != nil {
			return err
		}
		crc, node, _ := strings.Cut(got, "@")
		if crc != sums[i] {
			mismatches++
		}
		if node == args[0] {
			away++
		}
		b, err := rayo.Get(ctx, refs[i])
		if err != nil {
			return err
		}
		if fmt.Sprintf("%08x", crc32.ChecksumIEEE(b)) != sums[i] {
			mismatches++
		}
	}
	fmt.Printf("mismatches=%d\nread_on_other_node=%d\n", mismatches, away)
	for _, r := range refs {
		r.Release()
	}
	fmt.Println("released=true")
	return nil
}

// busyMode submits more work than the local node has CPUs for: it spills
// over to the other nodes.
func busyMode(ctx context.Context) error {
	var refs []rayo.Ref[string]
	for i := 0; i < 12; i++ {
		refs = append(refs, whereSlow.Remote(rayo.V(300)))
	}
	nodes, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return err
	}
	fmt.Println("nodes=" + distinct(nodes))
	return nil
}

// affinityMode runs a task on node args[0], then with hard and soft
// affinity to a node that does not exist.
func affinityMode(ctx context.Context, args []string) error {
	got, err := rayo.Get(ctx, where.Options(rayo.NodeAffinity(args[0], false)).Remote())
	if err != nil {
		return err
	}
	fmt.Println("ran=" + got)
	_, err = rayo.Get(ctx, where.Options(rayo.NodeAffinity("000000000000", false)).Remote())
	fmt.Println("hard_missing_err=" + oneLine(err))
	fmt.Println("hard_missing_infeasible=" + fmt.Sprint(errors.Is(err, rayo.ErrInfeasible)))
	got, err = rayo.Get(ctx, where.Options(rayo.NodeAffinity("000000000000", true)).Remote())
	if err != nil {
		return err
	}
	fmt.Println("soft_missing_ran=" + got)
	return nil
}

// resourcesMode runs a task that needs a custom resource one node has,
// then one that needs a GPU no node has.
func resourcesMode(ctx context.Context) error {
	got, err := rayo.Get(ctx, where.Options(rayo.Resources(map[string]float64{"special": 1})).Remote())
	if err != nil {
		return err
	}
	fmt.Println("special_ran=" + got)
	start := time.Now()
	_, err = rayo.Get(ctx, where.Options(rayo.Resources(map[string]float64{"GPU": 1})).Remote())
	fmt.Println("infeasible_err=" + oneLine(err))
	fmt.Println("infeasible_is=" + fmt.Sprint(errors.Is(err, rayo.ErrInfeasible)))
	fmt.Println("infeasible_ms=" + fmt.Sprint(time.Since(start).Milliseconds()))
	return nil
}

// objectsMode makes a big object on node args[0] and reads it on node
// args[1] and in the driver; then a big value put by the driver is read on
// node args[1].
func objectsMode(ctx context.Context, args []string) error {
	const n = 8 << 20 // 64 MiB of float64
	big := fill.Options(rayo.NodeAffinity(args[0], false)).Remote(rayo.V(n), rayo.V(0.5))
	s, err := rayo.Get(ctx, sum.Options(rayo.NodeAffinity(args[1], false)).Remote(big))
	if err != nil {
		return err
	}
	fmt.Println("remote_sum=" + fmt.Sprint(s))
	xs, err := rayo.Get(ctx, big)
	if err != nil {
		return err
	}
	local := 0.0
	for _, x := range xs {
		local += x
	}
	fmt.Println("driver_sum=" + fmt.Sprint(local))
	// A big value put by the driver, read on another node.
	vals := make([]float64, 1<<20)
	for i := range vals {
		vals[i] = 2
	}
	s, err = rayo.Get(ctx, sum.Options(rayo.NodeAffinity(args[1], false)).Remote(rayo.Put(ctx, vals)))
	if err != nil {
		return err
	}
	fmt.Println("put_sum=" + fmt.Sprint(s))
	return nil
}

// localityMode checks that a task goes where most of its arguments' bytes
// are (node args[0]).
func localityMode(ctx context.Context, args []string) error {
	big := fill.Options(rayo.NodeAffinity(args[0], false)).Remote(rayo.V(1<<20), rayo.V(1))
	got, err := rayo.Get(ctx, lenWhere.Remote(big))
	if err != nil {
		return err
	}
	fmt.Println("ran=" + got)
	return nil
}

// pgLeaveMode leaves groups behind for when the driver ends: the detached
// one stays.
func pgLeaveMode(ctx context.Context) error {
	for _, opts := range [][]rayo.Option{{rayo.Name("left")}, {rayo.Name("kept"), rayo.Detached()}} {
		pg, err := rayo.NewPlacementGroup(ctx, []rayo.Bundle{{"CPU": 0.25}}, rayo.StrategyPack, opts...)
		if err != nil {
			return err
		}
		if err := pg.Ready(ctx); err != nil {
			return err
		}
	}
	fmt.Println("ready=2")
	return nil
}

// failoverMode runs tasks on node args[1] while the test kills it: they
// finish elsewhere.
func failoverMode(ctx context.Context, args []string) error {
	dir, victim := args[0], args[1]
	var refs []rayo.Ref[string]
	for i := 0; i < 2; i++ {
		refs = append(refs, marked.Options(rayo.NodeAffinity(victim, true)).Remote(rayo.V(dir), rayo.V(3000)))
	}
	fmt.Println("submitted=2")
	nodes, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return err
	}
	fmt.Println("nodes=" + distinct(nodes))
	return nil
}

// actorMode puts two actors on node args[0], which the test kills: the
// one allowed to restart does so elsewhere, the other fails with
// ErrActorDied.
func actorMode(ctx context.Context, args []string) error {
	victim := args[0]
	keep := newCounter.Options(rayo.NodeAffinity(victim, true), rayo.MaxRestarts(1), rayo.MaxTaskRetries(1)).Remote()
	lose := newCounter.Options(rayo.NodeAffinity(victim, true)).Remote()
	for _, a := range []rayo.Actor[*Counter]{keep, lose} {
		v, err := rayo.Get(ctx, incr.Remote(a))
		if err != nil {
			return err
		}
		fmt.Printf("before=%d@%s\n", v.N, v.Node)
	}
	fmt.Println("ready=1")
	bufio.NewReader(os.Stdin).ReadString('\n') // the test kills the node
	v, err := rayo.Get(ctx, incr.Remote(keep))
	if err != nil {
		return fmt.Errorf("restarted actor: %w", err)
	}
	fmt.Printf("restarted=%d@%s\n", v.N, v.Node)
	_, err = rayo.Get(ctx, incr.Remote(lose))
	fmt.Println("lost_is_died=" + fmt.Sprint(errors.Is(err, rayo.ErrActorDied)))
	return nil
}

// lineageMode: an object whose only copy was on a killed node (args[0])
// is made again. A task on another node (args[1], a borrower) whose
// argument was lost has its owner make it again too.
func lineageMode(ctx context.Context, args []string) error {
	victim, other := args[0], args[1]
	big := fill.Options(rayo.NodeAffinity(victim, true)).Remote(rayo.V(1<<20), rayo.V(3))
	lent := fill.Options(rayo.NodeAffinity(victim, true)).Remote(rayo.V(1<<19), rayo.V(5))
	// Its argument, released by the driver, is kept for its lineage.
	base := rayo.Put(ctx, slices.Repeat([]float64{2}, 1<<17))
	derived := scaled.Options(rayo.NodeAffinity(victim, true)).Remote(base, rayo.V(3.0))
	if _, _, err := rayo.Wait(ctx, []rayo.Ref[[]float64]{big, lent, derived}, 3); err != nil {
		return err
	}
	base.Release()
	fmt.Println("ready=1")
	bufio.NewReader(os.Stdin).ReadString('\n') // the test kills the node
	got, err := rayo.Get(ctx, lenWhere.Options(rayo.NodeAffinity(other, false)).Remote(lent))
	if err != nil {
		return err
	}
	fmt.Println("borrowed=" + got)
	ds, err := rayo.Get(ctx, derived)
	if err != nil {
		return err
	}
	fmt.Printf("derived=%d*%v\n", len(ds), ds[0])
	xs, err := rayo.Get(ctx, big)
	if err != nil {
		return err
	}
	fmt.Println("rebuilt_len=" + fmt.Sprint(len(xs)) + " first=" + fmt.Sprint(xs[0]))
	return nil
}

// outageMode makes a named detached actor, then runs tasks while the test
// kills the control store (and the head starts it again).
func outageMode(ctx context.Context, args []string) error {
	dir, ms := args[0], 0
	fmt.Sscan(args[1], &ms)
	a := newCounter.Options(rayo.Name("survivor"), rayo.Namespace("outage"), rayo.Detached()).Remote()
	v, err := rayo.Get(ctx, incr.Remote(a))
	if err != nil {
		return err
	}
	fmt.Printf("actor_before=%d@%s\n", v.N, v.Node)
	var refs []rayo.Ref[Square]
	for x := 0; x < 4; x++ {
		refs = append(refs, slowSquare.Options(rayo.Spread()).Remote(rayo.V(dir), rayo.V(ms), rayo.V(x)))
	}
	fmt.Println("submitted=4")
	sq, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return err
	}
	var vals, nodes []string
	for _, s := range sq {
		vals = append(vals, fmt.Sprint(s.V))
		nodes = append(nodes, s.Node)
	}
	fmt.Println("nodes=" + distinct(nodes))
	fmt.Println("squares=" + strings.Join(vals, ","))
	return nil
}

// outageCheckMode runs after the control store's restart: the detached
// actor is found by its name, and new work spreads over the nodes.
func outageCheckMode(ctx context.Context) error {
	a, err := rayo.GetActor[*Counter](ctx, "survivor", rayo.Namespace("outage"))
	if err != nil {
		return err
	}
	v, err := rayo.Get(ctx, incr.Remote(a))
	if err != nil {
		return err
	}
	fmt.Printf("actor_after=%d@%s\n", v.N, v.Node)
	ran, err := spreadOver(ctx, 4)
	if err != nil {
		return err
	}
	fmt.Println("nodes=" + ran)
	return nil
}

// spreadOver runs n SPREAD tasks over the alive nodes, each waiting until
// tasks run on all of them (the cluster shares this machine's file
// system), and says which nodes they ran on.
func spreadOver(ctx context.Context, n int) (string, error) {
	nodes, err := rayo.Nodes(ctx)
	if err != nil {
		return "", err
	}
	alive := 0
	for _, x := range nodes {
		if x.Alive {
			alive++
		}
	}
	dir, err := os.MkdirTemp("", "rayo-spread-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	var refs []rayo.Ref[string]
	for i := 0; i < n; i++ {
		refs = append(refs, meetNodes.Options(rayo.Spread()).Remote(rayo.V(dir), rayo.V(alive)))
	}
	ran, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return "", err
	}
	return distinct(ran), nil
}

func distinct(xs []string) string {
	seen := map[string]bool{}
	for _, x := range xs {
		seen[x] = true
	}
	var out []string
	for x := range seen {
		out = append(out, x)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func oneLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// placementGroups places groups of each strategy on three 1-CPU nodes and
// runs a task in each bundle.
func placementGroups(ctx context.Context) error {
	spread, err := rayo.NewPlacementGroup(ctx, []rayo.Bundle{{"CPU": 1}, {"CPU": 1}, {"CPU": 1}}, rayo.StrategyStrictSpread)
	if err != nil {
		return err
	}
	if err := spread.Ready(ctx); err != nil {
		return err
	}
	info, err := spread.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Println("spread_nodes=" + distinct(info.Nodes))
	ok := true
	for i, node := range info.Nodes {
		got, err := rayo.Get(ctx, where.Options(rayo.InPlacementGroup(spread, i), rayo.NumCPUs(1)).Remote())
		if err != nil {
			return err
		}
		ok = ok && got == node
	}
	fmt.Println("bundle_tasks_where_bundles=" + fmt.Sprint(ok))
	// Every CPU is in the group: a task outside it waits for the removal.
	outside := where.Remote()
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	done, _, _ := rayo.Wait(wctx, []rayo.Ref[string]{outside}, 1)
	cancel()
	fmt.Println("outside_ran_while_reserved=" + fmt.Sprint(len(done) > 0))
	if err := spread.Remove(ctx); err != nil {
		return err
	}
	if _, err := rayo.Get(ctx, outside); err != nil {
		return err
	}
	strict, err := rayo.NewPlacementGroup(ctx, []rayo.Bundle{{"CPU": 1}, {"CPU": 1}}, rayo.StrategyStrictPack)
	if err != nil {
		return err
	}
	wctx, cancel = context.WithTimeout(ctx, time.Second)
	err = strict.Ready(wctx)
	cancel()
	fmt.Println("strict_pack_err=" + fmt.Sprint(err))
	_ = strict.Remove(ctx)
	pack, err := rayo.NewPlacementGroup(ctx, []rayo.Bundle{{"CPU": 0.5}, {"CPU": 0.5}}, rayo.StrategyPack)
	if err != nil {
		return err
	}
	if err := pack.Ready(ctx); err != nil {
		return err
	}
	info, err = pack.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Println("pack_nodes=" + distinct(info.Nodes))
	a := newCounter.Options(rayo.InPlacementGroup(pack, 1)).Remote()
	v, err := rayo.Get(ctx, incr.Remote(a))
	if err != nil {
		return err
	}
	fmt.Println("actor_in_bundle=" + fmt.Sprint(v.Node == info.Nodes[1]))
	return pack.Remove(ctx)
}

// placementGroupDeath spreads a group over the three nodes; when the test
// kills and restarts the victim, the bundle that was there is placed again
// and a task in it runs on the new node.
func placementGroupDeath(ctx context.Context, victim string) error {
	pg, err := rayo.NewPlacementGroup(ctx, []rayo.Bundle{{"CPU": 0.25}, {"CPU": 0.25}, {"CPU": 0.25}}, rayo.StrategyStrictSpread)
	if err != nil {
		return err
	}
	if err := pg.Ready(ctx); err != nil {
		return err
	}
	info, err := pg.Info(ctx)
	if err != nil {
		return err
	}
	lost := slices.Index(info.Nodes, victim)
	fmt.Printf("ready=%d\n", lost)
	in := bufio.NewReader(os.Stdin)
	in.ReadString('\n') // the test kills the victim
	for {
		info, err = pg.Info(ctx)
		if err != nil {
			return err
		}
		if info.State == "RESCHEDULING" && info.Reason != "" {
			break
		}
		time.Sleep(20 * time.Millisecond) // the control store's view of another process's death
	}
	fmt.Println("rescheduling=" + info.Reason)
	in.ReadString('\n') // the test restarts the victim
	got, err := rayo.Get(ctx, where.Options(rayo.InPlacementGroup(pg, lost), rayo.NumCPUs(0.25)).Remote())
	if err != nil {
		return err
	}
	info, err = pg.Info(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("state=%s\nsame=%v\nreplaced=%s\n", info.State, info.Nodes[lost] == got, got)
	return nil
}
