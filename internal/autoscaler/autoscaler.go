package autoscaler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// Defaults of Config.
const (
	DefaultIdleTimeout   = 60 * time.Second
	DefaultInterval      = time.Second
	DefaultLaunchTimeout = 5 * time.Minute
	DefaultDrainTimeout  = 2 * time.Minute
)

// Config sets up an Autoscaler.
type Config struct {
	// Provider starts and stops the nodes; its NodeTypes are the kinds
	// of node the autoscaler adds.
	Provider Provider
	// ProviderName names the provider in the status (local, kubernetes).
	ProviderName string
	// Store is the cluster's control store.
	Store ControlStore
	// MaxWorkers bounds the nodes the autoscaler keeps, of all types
	// together (0: only each type's MaxWorkers bounds them).
	MaxWorkers int
	// IdleTimeout is how long a launched node stays idle (nothing
	// leased, nothing waiting) before it is drained and released, when
	// its type has more than its MinWorkers (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Interval is how often the autoscaler looks (0: DefaultInterval).
	Interval time.Duration
	// LaunchTimeout is how long an instance may run without its node
	// registering before it is terminated (0: DefaultLaunchTimeout).
	LaunchTimeout time.Duration
	// Drain, when set, drains a node before its instance is terminated;
	// an error keeps the node for the next round.
	Drain func(ctx context.Context, n *pb.NodeInfo) error
	// Log receives what the autoscaler does; nil discards it.
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Status is the autoscaler's view, as rayo status shows it.
type Status struct {
	Provider string `json:"provider"`
	// MaxWorkers bounds the nodes of all types together: Config's, or
	// else the types' maxima added up.
	MaxWorkers         int          `json:"max_workers"`
	IdleTimeoutSeconds float64      `json:"idle_timeout_seconds"`
	NodeTypes          []TypeStatus `json:"node_types"`
	PendingLaunches    []Launch     `json:"pending_launches"`
	IdleNodes          []IdleNode   `json:"idle_nodes"`
	// Unmet is demand no node there is or may be added can take now
	// (all types at their maximum).
	Unmet     []Shape `json:"unmet"`
	LastError string  `json:"last_error,omitempty"`
}

// TypeStatus is one node type and its nodes.
type TypeStatus struct {
	Name      string             `json:"name"`
	Resources map[string]float64 `json:"resources"`
	Min       int                `json:"min_workers"`
	Max       int                `json:"max_workers"`
	Running   int                `json:"running"` // instances whose node registered
	Pending   int                `json:"pending"` // instances launched, node not yet registered
}

// Launch is an instance launched whose node has not registered yet.
type Launch struct {
	Instance    string `json:"instance"`
	NodeType    string `json:"node_type"`
	SinceUnixMs int64  `json:"since_unix_ms"`
}

// IdleNode is a launched node with nothing to do, and when it is
// released if it stays so.
type IdleNode struct {
	NodeID          string `json:"node_id"`
	Instance        string `json:"instance"`
	NodeType        string `json:"node_type"`
	IdleSinceUnixMs int64  `json:"idle_since_unix_ms"`
	ReleaseAtUnixMs int64  `json:"release_at_unix_ms"`
}

// Autoscaler grows and shrinks a cluster through a Provider.
type Autoscaler struct {
	cfg   Config
	types []NodeType
	log   *slog.Logger

	// The loop's own state, touched only by step.
	seen      map[string]time.Time // instance -> when first listed without a node
	idleSince map[string]time.Time // instance -> when its node went idle
	lastKV    []byte               // the status last written

	mu     sync.Mutex
	status Status

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// ErrConfig is a Config the autoscaler cannot run with.
var ErrConfig = errors.New("autoscaler: bad configuration")

// CheckNodeTypes checks node types: each named once, with resources, and
// 0 <= MinWorkers <= MaxWorkers.
func CheckNodeTypes(types []NodeType) error {
	if len(types) == 0 {
		return fmt.Errorf("%w: no node types", ErrConfig)
	}
	names := map[string]bool{}
	for _, t := range types {
		switch {
		case t.Name == "":
			return fmt.Errorf("%w: a node type without a name", ErrConfig)
		case names[t.Name]:
			return fmt.Errorf("%w: node type %q named twice", ErrConfig, t.Name)
		case len(t.Resources) == 0:
			return fmt.Errorf("%w: node type %q has no resources", ErrConfig, t.Name)
		case t.MinWorkers < 0 || t.MaxWorkers < t.MinWorkers:
			return fmt.Errorf("%w: node type %q: want 0 <= min_workers (%d) <= max_workers (%d)", ErrConfig, t.Name, t.MinWorkers, t.MaxWorkers)
		}
		for r, q := range t.Resources {
			if q < 0 {
				return fmt.Errorf("%w: node type %q: resource %s is negative (%g)", ErrConfig, t.Name, r, q)
			}
		}
		names[t.Name] = true
	}
	return nil
}

// Start publishes the node types' shapes (so that requests some type fits
// wait for a node rather than fail) and starts the loop.
func Start(ctx context.Context, cfg Config) (*Autoscaler, error) {
	if cfg.Provider == nil || cfg.Store == nil {
		return nil, fmt.Errorf("%w: needs a provider and a control store", ErrConfig)
	}
	if cfg.MaxWorkers < 0 {
		return nil, fmt.Errorf("%w: max workers %d is negative", ErrConfig, cfg.MaxWorkers)
	}
	types := cfg.Provider.NodeTypes()
	if err := CheckNodeTypes(types); err != nil {
		return nil, err
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.LaunchTimeout <= 0 {
		cfg.LaunchTimeout = DefaultLaunchTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Autoscaler{
		cfg: cfg, types: types, log: log,
		seen: map[string]time.Time{}, idleSince: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if err := publishTypes(ctx, cfg.Store, types); err != nil {
		return nil, err
	}
	go a.loop()
	return a, nil
}

// publishTypes writes the node types' shapes under KeyLaunchable, which
// the control store hands to the raylets (requests a type fits wait for
// a node rather than fail).
func publishTypes(ctx context.Context, s ControlStore, types []NodeType) error {
	var launchable []*pb.ResourceDemand
	for _, t := range types {
		if t.MaxWorkers > 0 {
			launchable = append(launchable, &pb.ResourceDemand{Shape: placement.ResourceList(t.Resources), Count: int32(t.MaxWorkers)})
		}
	}
	if err := s.KVPut(ctx, Namespace, KeyLaunchable, EncodeDemands(launchable)); err != nil {
		return fmt.Errorf("autoscaler: publish the node types: %w", err)
	}
	return nil
}

// refreshTypes takes up the provider's node types when they changed (a
// RayoCluster's worker groups edited), publishing their shapes; types
// that do not pass CheckNodeTypes are refused and the old ones kept.
func (a *Autoscaler) refreshTypes(ctx context.Context) error {
	types := a.cfg.Provider.NodeTypes()
	if sameTypes(types, a.types) {
		return nil
	}
	if err := CheckNodeTypes(types); err != nil {
		return fmt.Errorf("autoscaler: the provider's new node types (keeping the old): %w", err)
	}
	if err := publishTypes(ctx, a.cfg.Store, types); err != nil {
		return err
	}
	a.log.Info("node types changed", "types", types)
	a.types = types
	return nil
}

// sameTypes reports whether two lists of node types are equal.
func sameTypes(x, y []NodeType) bool {
	return slices.EqualFunc(x, y, func(a, b NodeType) bool {
		return a.Name == b.Name && a.MinWorkers == b.MinWorkers && a.MaxWorkers == b.MaxWorkers && maps.Equal(a.Resources, b.Resources)
	})
}

// Close stops the loop and waits for it, then withdraws the launchable
// shapes (requests no node fits fail as infeasible again). The nodes
// stay; stopping the provider's instances is the provider's business.
func (a *Autoscaler) Close() error {
	var err error
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		err = Withdraw(context.Background(), a.cfg.Store)
	})
	<-a.done
	return err
}

// withdrawTimeout bounds Withdraw.
const withdrawTimeout = 5 * time.Second

// Withdraw clears the launchable shapes an autoscaler left in the control
// store (with Redis they outlive the head), if any: a head that runs no
// autoscaler calls it at start, so that requests no node fits fail as
// infeasible rather than wait for a node nothing will add.
func Withdraw(ctx context.Context, s ControlStore) error {
	ctx, cancel := context.WithTimeout(ctx, withdrawTimeout)
	defer cancel()
	b, found, err := s.KVGet(ctx, Namespace, KeyLaunchable)
	if err != nil {
		return fmt.Errorf("autoscaler: withdraw the node types: %w", err)
	}
	if !found || len(b) == 0 {
		return nil
	}
	if err := s.KVPut(ctx, Namespace, KeyLaunchable, nil); err != nil {
		return fmt.Errorf("autoscaler: withdraw the node types: %w", err)
	}
	return nil
}

// Status is the autoscaler's last view.
func (a *Autoscaler) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

func (a *Autoscaler) loop() {
	defer close(a.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		if err := a.step(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("autoscaler round failed", "err", err)
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

// step is one round: read the cluster, launch what the demand needs,
// release what stayed idle, publish the status.
func (a *Autoscaler) step(ctx context.Context) error {
	now := a.cfg.Now()
	st := Status{Provider: a.cfg.ProviderName, MaxWorkers: a.cfg.MaxWorkers, IdleTimeoutSeconds: a.cfg.IdleTimeout.Seconds()}
	err := a.round(ctx, now, &st)
	if err != nil {
		st.LastError = err.Error()
	}
	if st.MaxWorkers == 0 { // no bound of all types together: theirs
		for _, t := range a.types {
			st.MaxWorkers += t.MaxWorkers
		}
	}
	a.mu.Lock()
	a.status = st
	a.mu.Unlock()
	b, _ := json.Marshal(st) // plain fields
	if !bytes.Equal(b, a.lastKV) {
		if perr := a.cfg.Store.KVPut(ctx, Namespace, KeyStatus, b); perr == nil {
			a.lastKV = b
		} else if err == nil {
			err = perr
		}
	}
	return err
}

// requested reads the standing resource request.
func (a *Autoscaler) requested(ctx context.Context) ([]Shape, error) {
	b, ok, err := a.cfg.Store.KVGet(ctx, Namespace, KeyRequested)
	if err != nil || !ok {
		return nil, err
	}
	ds, err := DecodeDemands(b)
	if err != nil {
		return nil, err
	}
	var out []Shape
	for _, d := range ds {
		for i := int32(0); i < max(d.Count, 1); i++ {
			out = append(out, shapeOf(d.Shape))
		}
	}
	return out, nil
}

func (a *Autoscaler) nodeType(name string) (NodeType, bool) {
	for _, t := range a.types {
		if t.Name == name {
			return t, true
		}
	}
	return NodeType{}, false
}

// idle says whether a node has nothing leased and nothing waiting.
func idle(n *pb.NodeInfo) bool {
	if len(n.PendingShapes) > 0 {
		return false
	}
	for _, d := range n.Pending {
		if d.Quantity > 0 {
			return false
		}
	}
	return sameShape(shapeOf(n.Resources), shapeOf(n.Available))
}

func sameShape(a, b Shape) bool {
	for k, v := range a {
		if d := v - b[k]; d > 1e-9 || d < -1e-9 {
			return false
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok && v != 0 {
			return false
		}
	}
	return true
}
