package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rayo-dev/rayo"
)

// The actor metrics follow Ray's python/ray/_private/ray_perf.py: its
// Actor (num_cpus=0, as rayo's actors by default) is server here, its
// Client is client, and its work task is actorWork.

// server is Ray's Actor: the callee of every actor metric.
type server struct{}

// SmallValue is Ray's small_value: the cheapest call there is.
func (*server) SmallValue() int { return 0 }

// SmallValueArg is Ray's small_value_arg: a call with an argument, which
// the caller passes by ref.
func (*server) SmallValueArg(x []float64) int { return len(x) }

// client is Ray's Client: an actor that calls its servers itself.
type client struct{ servers []rayo.Actor[*server] }

// SmallValueBatchArg is Ray's small_value_batch_arg: put a small value,
// call each server n times with its ref, and get the results.
func (c *client) SmallValueBatchArg(n int) (int, error) {
	ctx := context.Background()
	x := rayo.Put(ctx, smallArg)
	if err := x.Err(); err != nil {
		return 0, err
	}
	defer x.Release()
	refs := make([]rayo.Ref[int], 0, n*len(c.servers))
	for _, s := range c.servers {
		for range n {
			refs = append(refs, smallValueArg.Remote(s, x))
		}
	}
	vs, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return 0, err
	}
	for _, v := range vs {
		if v != len(smallArg) {
			return 0, fmt.Errorf("small_value_arg saw %d values, want %d", v, len(smallArg))
		}
	}
	return len(refs), nil
}

// smallArg is the argument of n_n_actor_calls_with_arg_async: a small
// []float64 (Ray puts a 0), passed by ref.
var smallArg = make([]float64, 8)

var (
	newServer     = rayo.Actor0(func() *server { return &server{} })
	smallValue    = rayo.Method0(newServer, (*server).SmallValue)
	smallValueArg = rayo.Method1(newServer, (*server).SmallValueArg)

	newClient = rayo.Actor1(func(servers []rayo.Actor[*server]) *client {
		return &client{servers: servers}
	})
	clientBatchArg = rayo.Method1E(newClient, (*client).SmallValueBatchArg)

	// actorWork is Ray's work task of n:n actor calls async: it calls the
	// servers it is given, round robin, n times in all, and gets the
	// results.
	actorWork = rayo.Func2E(func(servers []rayo.Actor[*server], n int) (int, error) {
		defer func() {
			for _, s := range servers {
				s.Release()
			}
		}()
		if len(servers) == 0 {
			return 0, errors.New("no servers")
		}
		refs := make([]rayo.Ref[int], n)
		for i := range refs {
			refs[i] = smallValue.Remote(servers[i%len(servers)])
		}
		if _, err := rayo.GetAll(context.Background(), refs); err != nil {
			return 0, err
		}
		return n, nil
	})
)

// newServers creates n servers (with opts) and waits until each has
// answered a call, so that creation is not part of what is timed.
func (e *env) newServers(n int, opts ...rayo.Option) ([]rayo.Actor[*server], error) {
	class := newServer
	if len(opts) > 0 {
		class = newServer.Options(opts...)
	}
	servers := make([]rayo.Actor[*server], n)
	refs := make([]rayo.Ref[int], n)
	for i := range servers {
		servers[i] = class.Remote()
		if err := servers[i].Err(); err != nil {
			release(servers[:i+1])
			return nil, err
		}
		refs[i] = smallValue.Remote(servers[i])
	}
	if _, err := rayo.GetAll(e.ctx, refs); err != nil {
		release(servers)
		return nil, fmt.Errorf("creating %d actors: %w", n, err)
	}
	return servers, nil
}

// release drops handles that never left this process: their actors stop.
func release[S any](actors []rayo.Actor[S]) {
	for _, a := range actors {
		a.Release()
	}
}

// kill stops actors whose handles were passed to other processes (such
// actors are not stopped when the handles are released).
func (e *env) kill(actors ...[]rayo.Actor[*server]) {
	for _, as := range actors {
		for _, a := range as {
			killActor(e.ctx, a)
		}
	}
}

// killActor stops one actor (even when the metric's context has ended) and
// drops the handle.
func killActor[S any](ctx context.Context, a rayo.Actor[S]) {
	if a.Err() == nil && a.ID() != "" {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = rayo.Kill(ctx, a)
		cancel()
	}
	a.Release()
}

// batchCalls submits cfg.Batch calls to each of servers and gets them.
func (e *env) batchCalls(servers []rayo.Actor[*server]) error {
	refs := make([]rayo.Ref[int], 0, e.cfg.Batch*len(servers))
	for _, s := range servers {
		for range e.cfg.Batch {
			refs = append(refs, smallValue.Remote(s))
		}
	}
	_, err := rayo.GetAll(e.ctx, refs)
	return err
}

// 1_1_actor_calls_sync: one call to one actor and wait for its result,
// again and again (Ray: ray.get(a.small_value.remote())).
func actorCallsSync(e *env) (float64, string, error) {
	s, err := e.newServers(1)
	if err != nil {
		return 0, "", err
	}
	defer release(s)
	v, err := e.rate(1, func() error {
		_, err := rayo.Get(e.ctx, smallValue.Remote(s[0]))
		return err
	})
	return v, perCall(v), err
}

// 1_1_actor_calls_async: a batch of calls to one actor, then get them all
// (Ray: ray.get([a.small_value.remote() for _ in range(1000)])).
func actorCallsAsync(e *env) (float64, string, error) {
	s, err := e.newServers(1)
	if err != nil {
		return 0, "", err
	}
	defer release(s)
	v, err := e.rate(float64(e.cfg.Batch), func() error { return e.batchCalls(s) })
	return v, fmt.Sprintf("%s per call, batches of %d", dur(v), e.cfg.Batch), err
}

// 1_1_actor_calls_concurrent: the same, to an actor that runs up to 16
// calls at once (Ray: max_concurrency=16).
func actorCallsConcurrent(e *env) (float64, string, error) {
	s, err := e.newServers(1, rayo.MaxConcurrency(16))
	if err != nil {
		return 0, "", err
	}
	defer release(s)
	v, err := e.rate(float64(e.cfg.Batch), func() error { return e.batchCalls(s) })
	return v, fmt.Sprintf("%s per call, batches of %d, MaxConcurrency(16)", dur(v), e.cfg.Batch), err
}

// 1_n_actor_calls_async: one caller, n actors (cfg.Actors): a batch of
// calls to each actor, then get them all. Ray's caller is a Client actor
// (small_value_batch); here it is the driver.
func oneToNActorCallsAsync(e *env) (float64, string, error) {
	s, err := e.newServers(e.cfg.Actors)
	if err != nil {
		return 0, "", err
	}
	defer release(s)
	v, err := e.rate(float64(e.cfg.Batch*len(s)), func() error { return e.batchCalls(s) })
	return v, fmt.Sprintf("driver → %d actors × %d calls", len(s), e.cfg.Batch), err
}

// n_n_actor_calls_async, as Ray defines it: n actors (cfg.Actors), and
// cfg.Clients work tasks, each given every actor's handle, each calling
// them round robin cfg.Batch times and getting the results; calls per
// second.
func nToNActorCallsAsync(e *env) (float64, string, error) {
	s, err := e.newServers(e.cfg.Actors)
	if err != nil {
		return 0, "", err
	}
	defer e.kill(s) // their handles went to the tasks
	v, err := e.rate(float64(e.cfg.Clients*e.cfg.Batch), func() error {
		refs := make([]rayo.Ref[int], e.cfg.Clients)
		for i := range refs {
			refs[i] = actorWork.Remote(rayo.V(s), rayo.V(e.cfg.Batch))
		}
		vs, err := rayo.GetAll(e.ctx, refs)
		if err != nil {
			return err
		}
		for _, n := range vs {
			if n != e.cfg.Batch {
				return fmt.Errorf("a client made %d calls, want %d", n, e.cfg.Batch)
			}
		}
		return nil
	})
	return v, fmt.Sprintf("%d client tasks × %d calls over %d actors", e.cfg.Clients, e.cfg.Batch, len(s)), err
}

// n_n_actor_calls_with_arg_async, as Ray defines it: n actors
// (cfg.Actors), each with a Client actor of its own that puts a small
// value and calls its actor cfg.Batch times with the value's ref; calls
// per second.
func nToNActorCallsWithArgAsync(e *env) (float64, string, error) {
	s, err := e.newServers(e.cfg.Actors)
	if err != nil {
		return 0, "", err
	}
	defer e.kill(s)
	clients := make([]rayo.Actor[*client], len(s))
	defer func() {
		for _, c := range clients {
			killActor(e.ctx, c)
		}
	}()
	for i := range clients {
		clients[i] = newClient.Remote(rayo.V(s[i : i+1]))
		if err := clients[i].Err(); err != nil {
			return 0, "", err
		}
	}
	v, err := e.rate(float64(len(clients)*e.cfg.Batch), func() error {
		refs := make([]rayo.Ref[int], len(clients))
		for i, c := range clients {
			refs[i] = clientBatchArg.Remote(c, rayo.V(e.cfg.Batch))
		}
		vs, err := rayo.GetAll(e.ctx, refs)
		if err != nil {
			return err
		}
		for _, n := range vs {
			if n != e.cfg.Batch {
				return fmt.Errorf("a client made %d calls, want %d", n, e.cfg.Batch)
			}
		}
		return nil
	})
	return v, fmt.Sprintf("%d client actors × %d calls with a ref to %d float64s", len(clients), e.cfg.Batch, len(smallArg)), err
}

// actor_creation_per_second: create cfg.ActorsPerRound actors at once,
// call each once and get the results, then release them all (their
// processes stop in the background); actors per second. The note gives
// the worker processes alive at the end, to show whether stopping keeps
// up with starting.
func actorCreation(e *env) (float64, string, error) {
	k := e.cfg.ActorsPerRound
	// The worker processes are counted in the background, now and then,
	// so that scanning /proc is not part of the rounds.
	var peak atomic.Int64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if n := int64(len(childProcesses())); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	v, err := e.rate(float64(k), func() error {
		actors := make([]rayo.Actor[*server], k)
		refs := make([]rayo.Ref[int], k)
		for i := range actors {
			actors[i] = newServer.Remote()
			if err := actors[i].Err(); err != nil {
				release(actors[:i+1])
				return err
			}
			refs[i] = smallValue.Remote(actors[i])
		}
		_, err := rayo.GetAll(e.ctx, refs)
		release(actors)
		return err
	})
	close(stop)
	<-sampled
	return v, fmt.Sprintf("%s per actor, %d at a time; at most %d worker processes seen, %d at the end",
		dur(v), k, peak.Load(), len(childProcesses())), err
}

// childProcesses lists the processes whose parent is this one: rayo's
// workers, actors included.
func childProcesses() []int {
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if parentOf(pid) == me {
			out = append(out, pid)
		}
	}
	return out
}
