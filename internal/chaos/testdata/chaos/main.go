// Command chaos is the driver of the chaos suite (internal/chaos): each
// mode runs one workload and prints key=value lines for the suite to
// check; between rounds it prints round=N and, where the suite injects a
// fault by hand, waits for a line on its standard input.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// leaf is one nested task's work: a number only it makes.
var leaf = rayo.Func2(func(i, j int) int {
	time.Sleep(20 * time.Millisecond) // work a node kill can land in
	return i*1000 + j
})

// outer submits inner leaves and sums them, from inside a task.
var outer = rayo.Func2E(func(i, inner int) (int, error) {
	refs := make([]rayo.Ref[int], inner)
	for j := range refs {
		refs[j] = leaf.Options(rayo.MaxRetries(-1)).Remote(rayo.V(i), rayo.V(j))
	}
	vals, err := rayo.GetAll(context.Background(), refs)
	if err != nil {
		return 0, err
	}
	sum := 0
	for _, v := range vals {
		sum += v
	}
	return sum, nil
})

func outerWant(i, inner int) int { return inner*i*1000 + inner*(inner-1)/2 }

// Counter counts calls; a restarted actor starts again from zero.
type Counter struct{ n int }

// Step is what one call saw: the actor's process and node, and its count.
type Step struct {
	PID, N int
	Node   string
}

// Incr counts a call; with a gate, it waits until the gate file exists
// (the suite opens it once it has killed a node), so that the kill lands
// among the calls.
func (c *Counter) Incr(gate string) Step {
	c.n++
	for gate != "" {
		if _, err := os.Stat(gate); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling the suite's file
	}
	return Step{os.Getpid(), c.n, rayo.NodeID()}
}

var newCounter = rayo.Actor0(func() *Counter { return &Counter{} })
var incr = rayo.Method1(newCounter, (*Counter).Incr)

// bump adds one to the number in file and returns it.
func bump(file string) int {
	b, _ := os.ReadFile(file)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	n++
	_ = os.WriteFile(file, []byte(strconv.Itoa(n)), 0o644)
	return n
}

// suicidal SIGKILLs its own worker on its first three attempts.
var suicidal = rayo.Func1(func(dir string) int {
	n := bump(filepath.Join(dir, "attempts"))
	if n <= 3 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process
	}
	return n
})

// appErr returns an error, counting its runs in file.
var appErr = rayo.Func1E(func(file string) (int, error) {
	return 0, fmt.Errorf("run %d failed", bump(file))
})

// square is a retriable task.
var square = rayo.Func1(func(x int) int { return x * x })

// nest returns a ref its worker owns: the driver borrows it, and reads it
// from that owner (GetObject).
var nest = rayo.Func1(func(x int) rayo.Ref[int] { return square.Remote(rayo.V(x)) })

// once has an at-most-once effect: it creates a file named after i; a
// second run of the same i leaves a dup- file.
var once = rayo.Func2(func(dir string, i int) int {
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("once-%d", i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("dup-%d-%d", i, os.Getpid())), nil, 0o644)
		return -1
	}
	f.Close()
	return i
})

// blob is an object too big to go inline (it lives in a node's store).
var blob = rayo.Func1(func(i int) []byte {
	b := make([]byte, 110<<10)
	for k := range b {
		b[k] = byte(i + k)
	}
	return b
})

// checkBlob says whether b is blob(i).
var checkBlob = rayo.Func2(func(b []byte, i int) bool {
	if len(b) != 110<<10 {
		return false
	}
	for k := range b {
		if b[k] != byte(i+k) {
			return false
		}
	}
	return true
})

// attempt records, in dir/attempts-<i>, each run of task i (a "begin"
// line when it starts, an "end" line when it ends, each with its node and
// pid), and returns i*i. On the node cutOff it runs for long: the suite
// cuts that node off while it runs, and its fencing kills it.
var attempt = rayo.Func3(func(dir, cutOff string, i int) int {
	note := func(what string) {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("attempts-%d", i)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "%s %s %d\n", what, rayo.NodeID(), os.Getpid())
	}
	note("begin")
	if rayo.NodeID() == cutOff {
		time.Sleep(60 * time.Second) // the partition lands in it
	} else {
		time.Sleep(100 * time.Millisecond)
	}
	note("end")
	return i * i
})

var slowSquare = rayo.Func1(func(x int) int {
	time.Sleep(200 * time.Millisecond)
	return x * x
})

func main() {
	if err := rayo.Init(); err != nil {
		fmt.Println("init_err=" + err.Error())
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	err := run(ctx, os.Args[1], os.Args[2:])
	cancel()
	if err != nil {
		fmt.Println("err=" + strings.ReplaceAll(err.Error(), "\n", " "))
		rayo.Shutdown()
		os.Exit(1)
	}
	rayo.Shutdown()
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fmt.Println("err=bad number " + s)
		os.Exit(2)
	}
	return n
}

func run(ctx context.Context, mode string, args []string) error {
	in := bufio.NewReader(os.Stdin)
	switch mode {
	case "tasks": // rounds, outer tasks per round, leaves per outer task
		tasksMode(ctx, in, atoi(args[0]), atoi(args[1]), atoi(args[2]))
	case "actors": // actors, calls each, the gate file
		return actorsMode(ctx, atoi(args[0]), atoi(args[1]), args[2])
	case "retry": // a folder for the counters
		retryMode(ctx, args[0])
	case "rpcfault": // a folder for the effects, tasks of each kind, the faults of the nested phase
		return rpcfaultMode(ctx, args[0], atoi(args[1]), args[2])
	case "lineage": // rounds, objects per round, the victim node
		return lineageMode(ctx, in, atoi(args[0]), atoi(args[1]), args[2])
	case "partition": // a folder for the attempts, the node to be cut off, tasks
		partitionMode(ctx, args[0], args[1], atoi(args[2]))
	case "gcs": // rounds, tasks per round
		gcsMode(ctx, in, atoi(args[0]), atoi(args[1]))
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return nil
}

// tasksMode runs rounds of n outer tasks of inner leaves each, and after
// each round waits for the suite to restart the node it killed.
func tasksMode(ctx context.Context, in *bufio.Reader, rounds, n, inner int) {
	for r := 0; r < rounds; r++ {
		refs := make([]rayo.Ref[int], n)
		for i := range refs {
			refs[i] = outer.Options(rayo.MaxRetries(-1)).Remote(rayo.V(r*n+i), rayo.V(inner))
		}
		fmt.Printf("round=%d\n", r)
		tally(ctx, refs, func(i, v int) bool { return v == outerWant(r*n+i, inner) }, r)
		in.ReadString('\n') // the suite has restarted the node it killed
	}
}

// actorsMode makes n actors and calls each calls times. The first half of
// each actor's calls are answered before the suite kills a node; the
// second half wait at the gate, queued at the actors, until the suite has
// killed the node (the actor there dies with it) and started it again.
// Every call is read back in call order, with the first call's answer, to
// count each actor's incarnations (its worker processes) and check the
// at-least-once rules: no call missing; within an incarnation the counts
// rise in call order; once a new incarnation answers, an old one never
// does again.
func actorsMode(ctx context.Context, n, calls int, gate string) error {
	actors, firsts, where, err := startCounters(ctx, n)
	if err != nil {
		return err
	}
	fmt.Println("actor_nodes=" + strings.Join(where, ","))
	refs := make([][]rayo.Ref[Step], n)
	for i := range refs {
		refs[i] = make([]rayo.Ref[Step], calls)
	}
	for k := 0; k < calls; k++ {
		g := ""
		if k >= calls/2 {
			g = gate
		}
		for i, a := range actors {
			refs[i][k] = incr.Remote(a, rayo.V(g))
		}
	}
	for i := range actors {
		for _, ref := range refs[i][:calls/2] {
			if _, err := rayo.Get(ctx, ref); err != nil {
				return fmt.Errorf("a call before the kill: %w", err)
			}
		}
	}
	fmt.Println("round=0")
	checkCalls(ctx, refs, firsts, where)
	return nil
}

// startCounters makes n spread, always restarted counters and calls each
// once; it returns them, the first call's answers and the actors' nodes.
func startCounters(ctx context.Context, n int) ([]rayo.Actor[*Counter], []Step, []string, error) {
	actors := make([]rayo.Actor[*Counter], n)
	for i := range actors {
		actors[i] = newCounter.Options(rayo.MaxRestarts(-1), rayo.MaxTaskRetries(-1), rayo.Spread()).Remote()
	}
	firsts := make([]Step, n)
	var where []string
	for i, a := range actors {
		s, err := rayo.Get(ctx, incr.Remote(a, rayo.V("")))
		if err != nil {
			return nil, nil, nil, err
		}
		firsts[i] = s
		where = append(where, s.Node)
	}
	return actors, firsts, where, nil
}

// checkCalls reads every actor's calls in call order and prints how many
// came back, went missing or broke the order, the restarts, each actor's
// incarnations by node, the first error, and round_done=0.
func checkCalls(ctx context.Context, refs [][]rayo.Ref[Step], firsts []Step, where []string) {
	ok, missing, disorder, restarts := 0, 0, 0, 0
	var first error
	var byNode []string
	for i := range refs {
		last := map[int]int{firsts[i].PID: firsts[i].N} // pid -> last count seen
		cur := firsts[i].PID
		for _, ref := range refs[i] {
			s, err := rayo.Get(ctx, ref)
			if err != nil {
				missing++
				first = cmp(first, err)
				continue
			}
			ok++
			prev, seen := last[s.PID]
			switch {
			case s.PID != cur && seen:
				disorder++ // an incarnation answered after a later one
				first = cmp(first, fmt.Errorf("actor %d: pid %d answered again after pid %d", i, s.PID, cur))
			case seen && s.N <= prev:
				disorder++
				first = cmp(first, fmt.Errorf("actor %d: pid %d counted %d after %d", i, s.PID, s.N, prev))
			}
			last[s.PID], cur = s.N, s.PID
		}
		restarts += len(last) - 1
		byNode = append(byNode, fmt.Sprintf("%s:%d", where[i], len(last)))
	}
	fmt.Printf("ok=%d\nmissing=%d\ndisorder=%d\nrestarts=%d\nincarnations=%s\nfirst_err=%v\nround_done=0\n",
		ok, missing, disorder, restarts, strings.Join(byNode, ","), first)
}

// retryMode runs a task that kills its own worker three times, then tasks
// that return an error, without and with RetryExceptions; it counts their
// runs in files in dir.
func retryMode(ctx context.Context, dir string) {
	v, err := rayo.Get(ctx, suicidal.Options(rayo.Name("suicidal"), rayo.MaxRetries(3)).Remote(rayo.V(dir)))
	fmt.Printf("retry_result=%d\nretry_err=%v\n", v, err)
	_, err = rayo.Get(ctx, appErr.Options(rayo.Name("apperr"), rayo.MaxRetries(3)).Remote(rayo.V(filepath.Join(dir, "app"))))
	fmt.Printf("app_is_task_failed=%v\n", errors.Is(err, rayo.ErrTaskFailed))
	_, err = rayo.Get(ctx, appErr.Options(rayo.Name("apperr-retried"), rayo.MaxRetries(3), rayo.RetryExceptions(true)).Remote(rayo.V(filepath.Join(dir, "appretried"))))
	fmt.Printf("app_retried_is_task_failed=%v\n", errors.Is(err, rayo.ErrTaskFailed))
}

// rpcfaultMode runs n tasks of each kind in two phases under RPC faults
// and prints how many came back right.
func rpcfaultMode(ctx context.Context, dir string, n int, faults string) error {
	// Phase 1, under the faults of RAYO_TESTING_RPC_FAILURE: retriable
	// tasks and tasks with an at-most-once effect.
	sq := make([]rayo.Ref[int], n)
	on := make([]rayo.Ref[int], n)
	for i := 0; i < n; i++ {
		sq[i] = square.Options(rayo.MaxRetries(-1)).Remote(rayo.V(i))
		on[i] = once.Options(rayo.MaxRetries(0)).Remote(rayo.V(dir), rayo.V(i))
	}
	ok, wrong, onceOK, onceFailed := 0, 0, 0, 0
	var first error
	for i := 0; i < n; i++ {
		v, err := rayo.Get(ctx, sq[i])
		if err == nil && v == i*i {
			ok++
		} else {
			wrong++
			first = cmp(first, err)
		}
		if v, err := rayo.Get(ctx, on[i]); err == nil && v == i {
			onceOK++
		} else {
			onceFailed++
		}
	}
	// Phase 2, under the faults given: refs owned by workers, which the
	// driver borrows and reads from them (GetObject). A lost PushTask
	// reply would have the owning worker stopped (its objects with it), so
	// this phase drops other methods.
	f, err := rpc.ParseFaults(faults)
	if err != nil {
		return err
	}
	rpc.SetFaults(f)
	ns := make([]rayo.Ref[rayo.Ref[int]], n)
	for i := range ns {
		ns[i] = nest.Options(rayo.MaxRetries(-1)).Remote(rayo.V(i))
	}
	for i := range ns {
		inner, err := rayo.Get(ctx, ns[i])
		v := 0
		if err == nil {
			v, err = rayo.Get(ctx, inner)
		}
		if err == nil && v == i*i {
			ok++
		} else {
			wrong++
			first = cmp(first, err)
		}
	}
	rpc.SetFaults(nil)
	req, resp := rpc.InjectedFaults()
	fmt.Printf("ok=%d\nwrong=%d\nonce_ok=%d\nonce_failed=%d\ninjected=%d\nfirst_err=%v\nround_done=0\n", ok, wrong, onceOK, onceFailed, req+resp, first)
	return nil
}

// lineageMode makes, in each of rounds, n objects on the victim; the suite
// kills it and names the node started again, and tasks check every object
// (made again from its lineage).
func lineageMode(ctx context.Context, in *bufio.Reader, rounds, n int, victim string) error {
	for r := 0; r < rounds; r++ {
		objs := make([]rayo.Ref[[]byte], n)
		for i := range objs {
			objs[i] = blob.Options(rayo.NodeAffinity(victim, true), rayo.MaxRetries(-1)).Remote(rayo.V(r*n + i))
		}
		if _, _, err := rayo.Wait(ctx, objs, n); err != nil {
			return err
		}
		fmt.Printf("round=%d\n", r)
		line, _ := in.ReadString('\n') // the suite kills the victim, and names the node started again
		victim = strings.TrimSpace(line)
		checks := make([]rayo.Ref[bool], n)
		for i, o := range objs {
			checks[i] = checkBlob.Options(rayo.MaxRetries(-1)).Remote(o, rayo.V(r*n+i))
		}
		tally(ctx, checks, func(_ int, good bool) bool { return good }, r)
	}
	return nil
}

// partitionMode runs n tasks that prefer the node the suite cuts off,
// recording their attempts in dir.
func partitionMode(ctx context.Context, dir, victim string, n int) {
	refs := make([]rayo.Ref[int], n)
	for i := range refs {
		refs[i] = attempt.Options(rayo.Name(fmt.Sprintf("part-%d", i)), rayo.NodeAffinity(victim, true), rayo.MaxRetries(3)).
			Remote(rayo.V(dir), rayo.V(victim), rayo.V(i))
	}
	fmt.Println("submitted=1")
	tally(ctx, refs, func(i, v int) bool { return v == i*i }, 0)
}

// gcsMode runs rounds of n spread tasks, and after each round waits for
// the suite to say the control store is back.
func gcsMode(ctx context.Context, in *bufio.Reader, rounds, n int) {
	for r := 0; r < rounds; r++ {
		refs := make([]rayo.Ref[int], n)
		for i := range refs {
			refs[i] = slowSquare.Options(rayo.Spread(), rayo.MaxRetries(-1)).Remote(rayo.V(r*n + i))
		}
		fmt.Printf("round=%d\n", r)
		tally(ctx, refs, func(i, v int) bool { return v == (r*n+i)*(r*n+i) }, r)
		in.ReadString('\n') // the control store is back
	}
}

func cmp(first, err error) error {
	if first == nil {
		return err
	}
	return first
}

// tally reads every ref and prints how many came back right (by right,
// given the ref's index), wrong or failed, the first error, and
// round_done=round.
func tally[T any](ctx context.Context, refs []rayo.Ref[T], right func(i int, v T) bool, round int) {
	ok, wrong, failed := 0, 0, 0
	var first error
	for i, ref := range refs {
		v, err := rayo.Get(ctx, ref)
		switch {
		case err != nil:
			failed++
			first = cmp(first, err)
		case right(i, v):
			ok++
		default:
			wrong++
		}
	}
	fmt.Printf("ok=%d\nwrong=%d\nfailed=%d\nfirst_err=%v\nround_done=%d\n", ok, wrong, failed, first, round)
}
