package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/autoscaler/kubernetes"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// autoscaleOptions are rayo start's autoscaling flags (head only).
type autoscaleOptions struct {
	provider    string
	maxWorkers  int
	idleTimeout time.Duration
	nodeTypes   string
	interval    time.Duration
	k8s         kubernetesOptions

	types []autoscaler.NodeType // resolved
	// kube is the kubernetes provider, built by resolve with
	// --autoscaler kubernetes.
	kube *kubernetes.Provider
	// typesBound is maxWorkers when it is only the node types' maxima
	// added up (kubernetes without --max-workers), so that the
	// autoscaler has no bound of its own and follows the types' changes.
	typesBound int
}

// defaultMaxWorkers bounds an autoscaled cluster's nodes unless
// --max-workers says otherwise (Ray's cluster launcher's default).
const defaultMaxWorkers = 2

func (o *autoscaleOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.provider, "autoscaler", "", "head: grow and shrink the cluster to its demand with this node provider: local (rayo start processes on this machine, for development and tests), kubernetes (the worker groups of the RayoCluster --kubernetes-cluster, run by rayo's operator); empty: no autoscaling")
	f.IntVar(&o.maxWorkers, "max-workers", defaultMaxWorkers, "head, with --autoscaler: the most nodes the autoscaler keeps besides the head, all node types together (kubernetes: default no bound but each worker group's maxReplicas)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", autoscaler.DefaultIdleTimeout, "head, with --autoscaler: how long an added node stays idle before it is drained and released")
	f.StringVar(&o.nodeTypes, "autoscaler-node-types", "", `head, with --autoscaler: the node types as JSON, e.g. '[{"name":"cpu4","resources":{"CPU":4},"min_workers":0,"max_workers":3}]' (default: one type "worker" shaped like the head, max_workers --max-workers)`)
	f.DurationVar(&o.interval, "autoscaler-interval", autoscaler.DefaultInterval, "head, with --autoscaler: how often the autoscaler looks at the demand")
	_ = f.MarkHidden("autoscaler-interval")
	o.k8s.register(f)
}

// nodeTypeJSON is a node type as --autoscaler-node-types gives it.
type nodeTypeJSON struct {
	Name       string             `json:"name"`
	Resources  map[string]float64 `json:"resources"`
	MinWorkers int                `json:"min_workers"`
	MaxWorkers *int               `json:"max_workers"`
}

// resolve checks the flags against the node's configuration and works out
// the node types.
func (o *autoscaleOptions) resolve(f *pflag.FlagSet, cfg node.Config) error {
	if o.provider == "" {
		for _, name := range []string{"max-workers", "idle-timeout", "autoscaler-node-types"} {
			if f.Changed(name) {
				return fmt.Errorf("--%s needs --autoscaler", name)
			}
		}
		return o.k8s.refuseWithout(f)
	}
	switch {
	case !cfg.Head:
		return errors.New("--autoscaler is for the head (--head): the autoscaler runs there")
	case o.provider != "local" && o.provider != "kubernetes":
		return fmt.Errorf("--autoscaler %q: want local or kubernetes", o.provider)
	case o.maxWorkers < 0:
		return fmt.Errorf("--max-workers %d: want 0 or more", o.maxWorkers)
	case o.idleTimeout <= 0:
		return fmt.Errorf("--idle-timeout %v: want a positive duration, such as 60s", o.idleTimeout)
	case o.interval <= 0:
		return fmt.Errorf("--autoscaler-interval %v: want a positive duration", o.interval)
	}
	if o.provider == "kubernetes" {
		return o.resolveKubernetes(f)
	}
	if err := o.k8s.refuseWithout(f); err != nil {
		return err
	}
	if o.nodeTypes == "" {
		res := map[string]float64{raylet.CPU: cfg.NumCPUs}
		maps.Copy(res, cfg.Resources)
		o.types = []autoscaler.NodeType{{Name: "worker", Resources: res, MaxWorkers: o.maxWorkers}}
		return nil
	}
	var list []nodeTypeJSON
	dec := json.NewDecoder(strings.NewReader(o.nodeTypes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return fmt.Errorf(`--autoscaler-node-types: want a JSON list such as '[{"name":"cpu4","resources":{"CPU":4},"max_workers":3}]': %w`, err)
	}
	o.types = make([]autoscaler.NodeType, len(list))
	for i, t := range list {
		o.types[i] = autoscaler.NodeType{Name: t.Name, Resources: t.Resources, MinWorkers: t.MinWorkers, MaxWorkers: o.maxWorkers}
		if t.MaxWorkers != nil {
			o.types[i].MaxWorkers = *t.MaxWorkers
		}
	}
	if err := autoscaler.CheckNodeTypes(o.types); err != nil {
		return fmt.Errorf("--autoscaler-node-types: %w", err)
	}
	return nil
}

// headAutoscaler is the autoscaler of a head and its provider.
type headAutoscaler struct {
	a     *autoscaler.Autoscaler
	close func() error // stops the provider (the local one's nodes)
	store *autoscaler.RPCStore
}

// startAutoscaler starts the autoscaler of the head n with the provider
// o names: the local one, whose nodes keep their state under the head's
// state folder, or the kubernetes one that resolve built.
func startAutoscaler(n *node.Node, cfg node.Config, o *autoscaleOptions, logOut io.Writer) (*headAutoscaler, error) {
	log := slog.New(slog.NewTextHandler(logOut, nil)).With("component", "autoscaler")
	if o.provider == "kubernetes" {
		p := o.kube
		return runAutoscaler(n, cfg, o, p, func() error { p.Close(); return nil }, log)
	}
	p, err := newLocalProvider(n, cfg, o, log)
	if err != nil {
		return nil, err
	}
	return runAutoscaler(n, cfg, o, p, p.Close, log)
}

// newLocalProvider is the local provider of the head n: its nodes join
// with the head's token (its join token with TLS) and TLS settings.
func newLocalProvider(n *node.Node, cfg node.Config, o *autoscaleOptions, log *slog.Logger) (*autoscaler.LocalProvider, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable for the autoscaler's nodes: %w", err)
	}
	token := cfg.Token
	var args []string
	if j := n.JoinToken(); j != "" {
		token = j
	}
	if !cfg.TLS {
		args = append(args, "--tls=false")
	} else if cfg.TLSCert != "" {
		args = append(args, "--tls-cert", cfg.TLSCert, "--tls-key", cfg.TLSKey, "--tls-ca", cfg.TLSCA)
	}
	return autoscaler.NewLocalProvider(autoscaler.LocalConfig{
		Exe: exe, Address: n.GCSAddr(), Token: token, Host: cfg.Host, Args: args, Types: o.types,
		// Short: the nodes' sockets live below it, and a Unix socket's
		// path has at most 107 bytes.
		StateRoot: filepath.Join(cfg.StateDir, "nodes"),
		Log:       log,
	})
}

// runAutoscaler starts the autoscaler of the head n with provider p;
// closeP stops p, when the autoscaler cannot start or at Close.
func runAutoscaler(n *node.Node, cfg node.Config, o *autoscaleOptions, p autoscaler.Provider, closeP func() error, log *slog.Logger) (*headAutoscaler, error) {
	store := autoscaler.NewRPCStore(n.GCSAddr(), cfg.Token)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := autoscaler.Start(ctx, autoscaler.Config{
		Provider: p, ProviderName: o.provider, Store: store, MaxWorkers: o.maxWorkers - o.typesBound,
		IdleTimeout: o.idleTimeout, Interval: o.interval,
		Log: log,
		// An idle node is drained (rayo drain) before it is released: it
		// takes no new work meanwhile, and leaves the cluster as drained.
		Drain: func(ctx context.Context, ni *pb.NodeInfo) error {
			rec, err := node.DrainNode(ctx, n.GCSAddr(), cfg.Token, fmt.Sprintf("%x", ni.NodeId), autoscaler.DefaultDrainTimeout)
			if err != nil {
				return err
			}
			_, err = node.WaitGone(ctx, n.GCSAddr(), cfg.Token, rec.NodeId)
			return err
		},
	})
	if err != nil {
		_ = closeP()
		_ = store.Close()
		return nil, err
	}
	return &headAutoscaler{a: a, close: closeP, store: store}, nil
}

// Close stops the autoscaler, then the nodes it started (the local
// provider's; a RayoCluster's pods stay, the operator's to run).
func (h *headAutoscaler) Close() error {
	err := h.a.Close()
	err = errors.Join(err, h.close())
	return errors.Join(err, h.store.Close())
}

// readAutoscalerStatus reads the autoscaler's view from the control store
// at address; nil when no autoscaler runs there.
func readAutoscalerStatus(ctx context.Context, address, token string) (*autoscaler.Status, error) {
	s := autoscaler.NewRPCStore(address, token)
	defer s.Close()
	b, found, err := s.KVGet(ctx, autoscaler.Namespace, autoscaler.KeyStatus)
	if err != nil || !found {
		return nil, err
	}
	var st autoscaler.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("the autoscaler's status: %w", err)
	}
	return &st, nil
}

// printAutoscaler writes the autoscaler's view: its node types, the
// launches under way, the idle nodes and when they go.
func printAutoscaler(out io.Writer, st *autoscaler.Status, now time.Time) error {
	fmt.Fprintf(out, "autoscaler: %s provider, at most %d node(s), idle timeout %gs\n", st.Provider, st.MaxWorkers, st.IdleTimeoutSeconds)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE TYPE\tRESOURCES\tMIN\tMAX\tRUNNING\tLAUNCHING")
	for _, t := range st.NodeTypes {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\n", t.Name, describeShape(t.Resources), t.Min, t.Max, t.Running, t.Pending)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range st.PendingLaunches {
		fmt.Fprintf(out, "  launching %s (%s) for %s\n", l.Instance, l.NodeType, now.Sub(time.UnixMilli(l.SinceUnixMs)).Round(time.Second))
	}
	for _, n := range st.IdleNodes {
		left := time.UnixMilli(n.ReleaseAtUnixMs).Sub(now).Round(time.Second)
		fmt.Fprintf(out, "  idle %s (%s, node %.8s) for %s, released in %s\n", n.Instance, n.NodeType, n.NodeID, now.Sub(time.UnixMilli(n.IdleSinceUnixMs)).Round(time.Second), max(left, 0))
	}
	for _, s := range st.Unmet {
		fmt.Fprintf(out, "  waiting, no node can be added for it: %s\n", describeShape(s))
	}
	if st.LastError != "" {
		fmt.Fprintf(out, "  last error: %s\n", st.LastError)
	}
	return nil
}

func describeShape(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %g", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
