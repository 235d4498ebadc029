package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/hostres"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// startOptions are rayo start's flags.
type startOptions struct {
	cfg       node.Config
	tokenFile string
	resources string
	numGPUs   float64
	storeMem  string
	block     bool
	auto      autoscaleOptions
}

func newStartCmd() *cobra.Command {
	var o startOptions
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start this machine's rayo daemons: a new cluster's head (--head) or a node joining one (--address)",
		Long: `Starts this machine's rayo daemons: a new cluster's head (--head), or a
node joining the cluster whose head is at --address HOST:PORT.

` + envRule + `

RAYO_ADDRESS is also the variable drivers join a cluster by, so --head on
the command line ignores it.

Ports: the head's control store listens on --port (6379) and its API
server on --dashboard-port (8265); every node's raylet, which other nodes
also pull objects from, on --raylet-port and its /metrics on
--metrics-port (0, the default: a free port). Fix them to expose them
from a container.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.resolve(cmd); err != nil {
				return err
			}
			if !o.block {
				return daemonize(cmd, o.cfg)
			}
			return runNode(cmd, o.cfg, &o.auto)
		},
	}
	o.register(cmd.Flags())
	return cmd
}

// register declares the flags on f.
func (o *startOptions) register(f *pflag.FlagSet) {
	f.BoolVar(&o.cfg.Head, "head", false, "start a new cluster's head (control store and raylet)")
	f.StringVar(&o.cfg.Address, "address", "", "join the cluster whose head is at HOST:PORT")
	f.IntVar(&o.cfg.Port, "port", node.DefaultPort, "head: the control store's port")
	f.StringVar(&o.cfg.Host, "host", "127.0.0.1", "address to listen on, which other nodes dial (beyond loopback needs a token); auto: this machine's first address beyond loopback, as in a container")
	f.IntVar(&o.cfg.RayletPort, "raylet-port", 0, "the raylet's port, where other nodes take leases and pull objects (the object manager's port too); 0: a free one")
	f.IntVar(&o.cfg.MetricsPort, "metrics-port", 0, "the port of this node's Prometheus /metrics; 0: a free one")
	f.Float64Var(&o.cfg.NumCPUs, "num-cpus", float64(numCPU()), "CPUs this node offers")
	f.Float64Var(&o.numGPUs, "num-gpus", float64(raylet.DetectGPUs()), "GPUs this node offers (default: those the NVIDIA driver lists); tasks that ask for some see theirs in CUDA_VISIBLE_DEVICES")
	f.StringToStringVar(&o.cfg.Labels, "labels", nil, "labels describing this node to the cluster, as KEY=VALUE pairs separated by commas (rayo status shows them; autoscalers find their nodes by them)")
	f.StringVar(&o.resources, "resources", "", `custom resources as JSON, e.g. '{"special": 2}'`)
	f.StringVar(&o.storeMem, "object-store-memory", "", "bytes of this node's shared-memory object store, such as 2GiB, 512MiB, 2G or 1073741824 (default: 30% of the node's memory, honouring a cgroup limit; the store is a memfd, which /dev/shm's size does not bound)")
	f.Float64Var(&o.cfg.MemoryUsageThreshold, "memory-usage-threshold", 0, "the fraction of the node's memory (cgroup-aware) past which its memory monitor kills the worker of the newest retriable task (default 0.95, or RAYO_MEMORY_USAGE_THRESHOLD)")
	f.StringVar(&o.cfg.Token, "token", "", "the cluster's secret (default: RAYO_TOKEN; the head makes one)")
	f.StringVar(&o.tokenFile, "token-file", "", "read the cluster's secret from this file (a mounted Secret), which keeps it out of argv and the environment")
	f.StringVar(&o.cfg.RedisAddress, "redis-address", "", "head: keep the control store's tables in the Redis server at HOST:PORT, so that a restarted control store keeps its nodes, jobs, named actors and KV")
	f.StringVar(&o.cfg.RedisPassword, "redis-password", "", "head: the Redis server's password (default: RAYO_REDIS_PASSWORD)")
	f.IntVar(&o.cfg.DashboardPort, "dashboard-port", 8265, "head: the API server's port (web dashboard, state API, /metrics); 0: none")
	f.StringVar(&o.cfg.DashboardHost, "dashboard-host", "127.0.0.1", "head: the API server's address")
	f.StringVar(&o.cfg.MetricsHost, "metrics-host", "127.0.0.1", "the address this node's /metrics listens on (beyond loopback, whoever reaches it reads what runs where)")
	f.StringSliceVar(&o.cfg.DashboardAllowedHosts, "dashboard-allowed-hosts", nil, "head: host names (comma-separated) under which browsers may reach the API server, besides IP addresses, localhost and this machine's name; others are refused (DNS rebinding)")
	f.IntVar(&o.cfg.MaxTaskRecords, "max-task-records", 0, "head: task attempts kept for the state API (default 10000): past it the oldest finished are dropped")
	f.StringVar(&o.cfg.SpillDir, "object-spilling-dir", "", "where objects spill when the store passes 80% (default: the session folder's spill/)")
	f.Float64Var(&o.cfg.SpillThreshold, "object-spilling-threshold", 0.95, "fraction of the spill folder's disk past which nothing more spills; then a put that does not fit fails")
	f.DurationVar(&o.cfg.GCSReconnectTimeout, "gcs-reconnect-timeout", node.DefaultGCSReconnectTimeout, "how long this node goes on without an answer from the control store (away, restarting, or cut off) before it stops, fenced: its workers killed, its drivers failed, the daemon exiting non-zero (a supervisor may start it again, as a new node)")
	f.BoolVar(&o.block, "block", false, "stay in the foreground")
	addTLSFlags(f, &o.cfg)
	o.auto.register(f)
}

// resolve completes the configuration from the flags, their environment
// twins and this machine's cluster record, checking each.
func (o *startOptions) resolve(cmd *cobra.Command) error {
	cfg := &o.cfg
	fromEnv, err := applyEnv(cmd.Flags(), os.LookupEnv)
	if err != nil {
		return err
	}
	if cfg.Head && !fromEnv["head"] && fromEnv["address"] {
		cfg.Address = ""
	}
	if cfg.Head == (cfg.Address != "") {
		if fromEnv["head"] || fromEnv["address"] {
			return errors.New("give exactly one of --head and --address HOST:PORT (or of their twins RAYO_HEAD and RAYO_ADDRESS)")
		}
		return errors.New("give exactly one of --head and --address HOST:PORT")
	}
	if err := o.resolveResources(); err != nil {
		return err
	}
	if err := o.auto.resolve(cmd.Flags(), *cfg); err != nil {
		return err
	}
	if cfg.Host, err = resolveHost(cfg.Host, systemInterfaces); err != nil {
		return err
	}
	if err := o.resolveSecrets(fromEnv); err != nil {
		return err
	}
	cfg.StateDir = node.StateDir()
	return nil
}

// resolveResources reads --resources, --object-store-memory,
// --memory-usage-threshold and --num-gpus.
func (o *startOptions) resolveResources() error {
	cfg := &o.cfg
	if o.resources != "" {
		if err := json.Unmarshal([]byte(o.resources), &cfg.Resources); err != nil {
			return fmt.Errorf("--resources: want a JSON object of numbers such as '{\"special\": 2}': %w", err)
		}
	}
	if o.storeMem != "" {
		n, err := hostres.ParseBytes(o.storeMem)
		if err != nil {
			return fmt.Errorf("--object-store-memory: %w", err)
		}
		cfg.ObjectStoreMemory = n
	}
	if t := cfg.MemoryUsageThreshold; t != 0 && (math.IsNaN(t) || t <= 0 || t > 1) {
		return fmt.Errorf("--memory-usage-threshold %g: want a fraction above 0, at most 1 (such as 0.95)", t)
	}
	if cfg.GCSReconnectTimeout <= 0 {
		return fmt.Errorf("--gcs-reconnect-timeout %v: want a positive duration, such as 60s", cfg.GCSReconnectTimeout)
	}
	if o.numGPUs < 0 || o.numGPUs != math.Trunc(o.numGPUs) {
		return fmt.Errorf("--num-gpus %g: want a whole number", o.numGPUs)
	}
	if o.numGPUs > 0 {
		if cfg.Resources == nil {
			cfg.Resources = map[string]float64{}
		}
		cfg.Resources[raylet.GPU] = o.numGPUs
	}
	return nil
}

// resolveSecrets finds the token (the flags, RAYO_TOKEN, this machine's
// cluster record, or a new one on a head) and the Redis password, then
// drops both from the environment: the daemon's children are given what
// they need explicitly, and nothing else it starts inherits them.
func (o *startOptions) resolveSecrets(fromEnv map[string]bool) error {
	cfg := &o.cfg
	var err error
	if cfg.Token, err = startToken(cfg.Token, o.tokenFile, fromEnv); err != nil {
		return err
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv("RAYO_TOKEN")
	}
	if !cfg.Head && cfg.Token == "" {
		if rec, err := node.ReadCluster(node.StateDir()); err == nil && rec.Address == cfg.Address {
			cfg.Token = rec.Token
		}
	}
	if cfg.Head && cfg.Token == "" {
		cfg.Token = node.NewToken()
	}
	if err := node.CheckToken(cfg.Token); err != nil {
		return err
	}
	if !cfg.Head && cfg.RedisAddress != "" {
		return errors.New("--redis-address is for the head (--head): its control store keeps its tables there")
	}
	if cfg.RedisPassword == "" {
		cfg.RedisPassword = os.Getenv("RAYO_REDIS_PASSWORD")
	}
	_ = os.Unsetenv("RAYO_TOKEN")
	_ = os.Unsetenv("RAYO_REDIS_PASSWORD")
	return nil
}

// secretFlags are the flags of rayo start whose values are secrets.
var secretFlags = []string{"token", "redis-password"}

// withoutSecrets returns args without the secretFlags and their values,
// in any of the forms the flag parser takes (--f v, --f=v, -f v, -f=v).
func withoutSecrets(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, eq := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && a != "--" && slices.Contains(secretFlags, name) {
			if !eq {
				i++ // the value is the next argument
			}
			continue
		}
		if a == "--" {
			return append(out, args[i:]...)
		}
		out = append(out, a)
	}
	return out
}

// daemonize starts `rayo start ... --block` in the background, in a
// session of its own, and waits until it is up.
func daemonize(cmd *cobra.Command, cfg node.Config) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := node.PrepareStateDir(cfg.StateDir); err != nil {
		return err
	}
	logPath := filepath.Join(cfg.StateDir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano()))
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// The secrets go to the daemon in its environment, not its arguments,
	// which every user of the machine can read.
	args := append(withoutSecrets(os.Args[1:]), "--block")
	child := exec.Command(exe, args...)
	child.Env = append(os.Environ(), "RAYO_TOKEN="+cfg.Token, "RAYO_REDIS_PASSWORD="+cfg.RedisPassword)
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		for _, pid := range node.PIDs(cfg.StateDir) {
			if pid == child.Process.Pid {
				out, _ := os.ReadFile(logPath)
				fmt.Fprint(cmd.OutOrStdout(), string(out))
				fmt.Fprintf(cmd.OutOrStdout(), "rayo: daemon pid %d, log %s\n", pid, logPath)
				return nil
			}
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("the daemon stopped (%v):\n%s", err, out)
		case <-deadline:
			_ = child.Process.Kill()
			return fmt.Errorf("the daemon did not come up within 30s; see %s", logPath)
		case <-time.After(20 * time.Millisecond): // polling for the daemon's pid file
		}
	}
}

// runNode runs the node in the foreground until a signal stops it.
func runNode(cmd *cobra.Command, cfg node.Config, auto *autoscaleOptions) (retErr error) {
	if cfg.Head {
		if err := setGCSCommand(&cfg); err != nil {
			return err
		}
	}
	cfg.Log = cmd.ErrOrStderr() // the node's own messages: a control store restart, its fencing
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	n, err := node.Start(ctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	var lost error
	// Deferred calls run last first: the node closes after everything
	// deferred below (the autoscaler and its nodes).
	defer func() {
		if err := n.Close(); err != nil && lost == nil && retErr == nil {
			retErr = err
		}
	}()
	out := cmd.OutOrStdout()
	if err := recordCluster(cfg, n); err != nil {
		return err
	}
	announceNode(out, cfg, n)
	pid := os.Getpid()
	if err := node.WritePID(cfg.StateDir, pid); err != nil {
		return err
	}
	defer node.RemovePID(cfg.StateDir, pid)
	if cfg.Head && auto.provider == "" {
		if err := withdrawNodeTypes(n, cfg); err != nil {
			return err
		}
	}
	if auto.provider != "" {
		as, err := startAutoscaler(n, cfg, auto, cmd.ErrOrStderr())
		if err != nil {
			return fmt.Errorf("start the autoscaler: %w", err)
		}
		fmt.Fprintf(out, "rayo: autoscaling with the %s provider, at most %d node(s) besides the head, idle timeout %v\n", auto.provider, auto.maxWorkers, auto.idleTimeout)
		// The autoscaler's nodes stop before the head.
		defer func() {
			if err := as.Close(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "rayo: stopping the autoscaler's nodes: %v\n", err)
			}
		}()
	}
	// The signals stay caught until runNode returns, through the
	// autoscaler's and the node's shutdown.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	lost = awaitNodeEnd(out, n, sig)
	if rec, err := node.ReadCluster(cfg.StateDir); err == nil && rec.RayletPID == os.Getpid() {
		node.RemoveCluster(cfg.StateDir)
	}
	return lost
}

// setGCSCommand makes a head's control store run as a process of its
// own, this executable's gcs-server, which the daemon starts again
// should it exit.
func setGCSCommand(cfg *node.Config) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this executable for the control store: %w", err)
	}
	cfg.GCSCommand = []string{exe, "gcs-server"}
	return nil
}

// recordCluster writes the cluster record drivers and rayo commands on
// this machine find the node by: the head's, or else the first node
// started on it.
func recordCluster(cfg node.Config, n *node.Node) error {
	if _, err := node.ReadCluster(cfg.StateDir); cfg.Head || err != nil {
		if err := node.WriteCluster(cfg.StateDir, n.Local()); err != nil {
			return err
		}
	}
	return nil
}

// announceNode prints what rayo start started: the cluster's address and
// how to join it (or the cluster joined), the session folder, the object
// store's size and the dashboard.
func announceNode(out io.Writer, cfg node.Config, n *node.Node) {
	if cfg.Head {
		fmt.Fprintf(out, "rayo: started a cluster; its address is %s\n", n.GCSAddr())
		fmt.Fprintf(out, "rayo: add a node with: rayo start --address %s (token in %s, or RAYO_TOKEN)\n", n.GCSAddr(), cfg.StateDir)
		if j := n.JoinToken(); j != "" {
			fmt.Fprintf(out, "rayo: on another machine, join over TLS with --token and the join token, join_token in %s/cluster.json (K10<CA fingerprint %s>::<secret>)\n", cfg.StateDir, j[3:3+64])
		}
	} else {
		fmt.Fprintf(out, "rayo: joined the cluster at %s\n", cfg.Address)
	}
	fmt.Fprintf(out, "rayo: session folder %s\n", n.SessionDir())
	store, source := n.StoreSizing()
	fmt.Fprintf(out, "rayo: object store %s (%s)\n", formatBytes(store), source)
	if u := n.DashboardURL(); u != "" {
		fmt.Fprintf(out, "rayo: dashboard at %s\n", u)
	}
}

// withdrawNodeTypes withdraws the node types an autoscaler of an earlier
// head may have left in the control store (kept in Redis): no node will
// come for them.
func withdrawNodeTypes(n *node.Node, cfg node.Config) error {
	s := autoscaler.NewRPCStore(n.GCSAddr(), cfg.Token)
	err := autoscaler.Withdraw(context.Background(), s)
	_ = s.Close()
	return err
}

// awaitNodeEnd waits until a signal on sig stops the node, it is drained,
// or it is fenced, and returns the fencing's error in the last case.
func awaitNodeEnd(out io.Writer, n *node.Node, sig <-chan os.Signal) error {
	select {
	case <-sig:
	case <-n.Drained():
		fmt.Fprintln(out, "rayo: drained; the node leaves the cluster")
	case <-n.Fenced():
		// The cluster wrote this node off (or it cannot tell): it exits
		// non-zero, and a supervisor that starts it again makes a new node.
		return n.FenceErr()
	}
	return nil
}

func newStopCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop every rayo daemon on this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := node.StateDir()
			pids := node.PIDs(dir)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond) // waiting for another process to exit
				}
				if syscall.Kill(pid, 0) == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				node.RemovePID(dir, pid)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rayo: stopped %d daemon(s)\n", len(pids))
			return nil
		},
	}
}

// nodeJSON is a node in `rayo status --json`.
type nodeJSON struct {
	NodeID      string             `json:"node_id"`
	Address     string             `json:"address"`
	State       string             `json:"state"`
	Head        bool               `json:"head"`
	Resources   map[string]float64 `json:"resources"`
	Available   map[string]float64 `json:"available"`
	Pending     map[string]float64 `json:"pending_demand"`
	SessionDir  string             `json:"session_dir"`
	DeathReason string             `json:"death_reason,omitempty"`
	// ObjectStoreBytes is the capacity of the node's object store, and
	// ObjectStoreSource where the figure comes from.
	ObjectStoreBytes  int64  `json:"object_store_bytes"`
	ObjectStoreSource string `json:"object_store_source,omitempty"`
	// Labels are the node's --labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// formatBytes writes a size in the largest binary unit that keeps it at
// least 1.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

func resMap(rs []*pb.Resource) map[string]float64 {
	m := make(map[string]float64, len(rs))
	for _, r := range rs {
		m[r.Name] = r.Quantity
	}
	return m
}

// printStatus writes the table of nodes and the pending demand.
func printStatus(out io.Writer, list []nodeJSON) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\tRESOURCES (used/total)\tOBJECT STORE\tSESSION")
	for _, n := range list {
		role := n.NodeID[:8]
		if n.Head {
			role += " (head)"
		}
		state := n.State
		if n.DeathReason != "" {
			state += ": " + n.DeathReason
		}
		store := "-"
		if n.ObjectStoreBytes > 0 {
			store = formatBytes(n.ObjectStoreBytes)
		}
		res := "-" // a dead node's resources are gone with it
		if n.State == "ALIVE" || n.State == "DRAINING" {
			res = usedOfTotal(n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", role, n.Address, state, res, store, n.SessionDir)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "resources of the alive nodes (used/total): %s\n", aliveTotals(list))
	var demand []string
	for _, n := range list {
		if n.State != "ALIVE" {
			continue // what waited on a dead node waits there no more
		}
		for name, q := range n.Pending {
			demand = append(demand, fmt.Sprintf("%s %g on %s", name, q, n.NodeID[:8]))
		}
	}
	sort.Strings(demand)
	if len(demand) == 0 {
		demand = []string{"none"}
	}
	fmt.Fprintf(out, "pending demand: %s\n", strings.Join(demand, ", "))
	return nil
}

// aliveTotals is the resources of the ALIVE nodes of list, summed, as
// usedOfTotal writes a node's: a dead node's count no more.
func aliveTotals(list []nodeJSON) string {
	sum := nodeJSON{Resources: map[string]float64{}, Available: map[string]float64{}}
	for _, n := range list {
		if n.State != "ALIVE" {
			continue
		}
		for k, v := range n.Resources {
			if !placement.IsGroupResource(k) { // the node's own count the bundles
				sum.Resources[k] += v
			}
		}
		for k, v := range n.Available {
			sum.Available[k] += v
		}
	}
	if s := usedOfTotal(sum); s != "" {
		return s
	}
	return "none"
}

// usedOfTotal is a node's resources as "NAME used/total", sorted, with
// its placement groups' bundles counted rather than listed.
func usedOfTotal(n nodeJSON) string {
	var res []string
	groups := 0
	for name, total := range n.Resources {
		if placement.IsGroupResource(name) {
			// A bundle's own: the node's resources show it taken.
			if strings.HasPrefix(name, "bundle_group_") && strings.Count(name, "_") == 2 {
				groups++
			}
			continue
		}
		res = append(res, fmt.Sprintf("%s %g/%g", name, total-n.Available[name], total))
	}
	if groups > 0 {
		res = append(res, fmt.Sprintf("bundles of %d placement group(s)", groups))
	}
	sort.Strings(res)
	return strings.Join(res, ", ")
}

func newStatusCmd() *cobra.Command {
	var address, token string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's nodes and their resources",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := node.Resolve(address, token)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := node.LoadTLS(c.TLSDir, ""); err != nil {
				return err
			}
			nodes, err := node.ListNodes(ctx, c.Address, c.Token)
			if err != nil {
				return err
			}
			list := make([]nodeJSON, len(nodes))
			for i, n := range nodes {
				list[i] = nodeJSON{
					NodeID: fmt.Sprintf("%x", n.NodeId), Address: n.Address, State: n.State, Head: n.Head,
					Resources: resMap(n.Resources), Available: resMap(n.Available), Pending: resMap(n.Pending), SessionDir: n.SessionDir, DeathReason: n.DeathReason,
					ObjectStoreBytes: n.ObjectStoreBytes, ObjectStoreSource: n.ObjectStoreSource, Labels: n.Labels,
				}
			}
			auto, err := readAutoscalerStatus(ctx, c.Address, c.Token)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				doc := map[string]any{"address": c.Address, "dashboard": c.Dashboard, "nodes": list}
				if auto != nil {
					doc["autoscaler"] = auto
				}
				return enc.Encode(doc)
			}
			fmt.Fprintf(out, "cluster %s: %d node(s)\n", c.Address, len(list))
			if c.Dashboard != "" {
				fmt.Fprintf(out, "dashboard %s\n", c.Dashboard)
			}
			if err := printStatus(out, list); err != nil || auto == nil {
				return err
			}
			return printAutoscaler(out, auto, time.Now())
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "the cluster's HOST:PORT (default: RAYO_ADDRESS, or the cluster started here)")
	cmd.Flags().StringVar(&token, "token", "", "the cluster's secret (default: RAYO_TOKEN, or the one recorded here)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
