// Package node runs the daemons of a standalone cluster: on the head, the
// control store (GCS) and a raylet; on every other node, a raylet that
// joins the head's control store and keeps telling it that it is alive.
// The head's control store runs in its process or, as Ray's gcs_server,
// as a child process that the head starts again when it exits; with Redis
// the restarted control store finds its tables again, and every raylet,
// the head's too, registers anew with it.
package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/dashboard"
	"github.com/rayo-dev/rayo/internal/dashboard/web"
	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/jobs"
	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/raylet"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// DefaultPort is the head's control store port, as Ray's.
const DefaultPort = 6379

// HeartbeatInterval is how often a node tells the control store it lives.
const HeartbeatInterval = time.Second

// Config describes one node.
type Config struct {
	Head      bool
	Host      string // address to listen on; loopback unless told otherwise
	Port      int    // head: the control store's port (0: DefaultPort)
	Address   string // worker node: the head's control store, HOST:PORT
	Token     string // the cluster's secret
	NumCPUs   float64
	Resources map[string]float64
	// Labels describe the node to the cluster (rayo status, the state
	// API, autoscalers, which find the nodes they launched by them).
	Labels   map[string]string
	StateDir string // where session folders go
	// ObjectStoreMemory is the bytes of the node's shared-memory object
	// store; 0: 30% of the node's memory (cgroup-aware), at most 90% of
	// /dev/shm's free space.
	ObjectStoreMemory int64
	// MemoryUsageThreshold is the fraction of the node's memory past
	// which its raylet's memory monitor kills a worker (0: the default).
	MemoryUsageThreshold float64
	// RayletPort is the raylet's TCP port, where other nodes take leases
	// and pull objects (it is also the object manager's: transfers use
	// the same listener); MetricsPort is the node's /metrics port. 0: a
	// free port chosen at start. A fixed port that is taken fails Start.
	RayletPort  int
	MetricsPort int

	// RedisAddress (HOST:PORT), on the head, keeps the control store's
	// tables in that Redis server, so that a restarted control store
	// finds its nodes, jobs, named actors and KV again.
	RedisAddress  string
	RedisPassword string

	// GCSCommand, on the head, runs the control store as a process of its
	// own, as Ray's gcs_server: this command (the rayo executable and
	// "gcs-server"), to which the node adds --host and --port and gives the
	// token and Redis password in its environment (RAYO_TOKEN,
	// RAYO_REDIS_PASSWORD). The node restarts it when it exits. Empty: the
	// control store runs inside the node's process.
	GCSCommand []string
	// Log receives the node's own messages (such as a control store
	// restart); nil discards them.
	Log io.Writer

	// DashboardPort, on the head, is the API server's port (the web
	// dashboard, the state API and /metrics) on DashboardHost (default
	// 127.0.0.1); if it is taken, a free port is used. 0: no API server.
	DashboardPort int
	DashboardHost string
	// MetricsHost is the address the node's own /metrics listens on
	// (default 127.0.0.1: metrics tell what runs where, so they stay on
	// the machine unless a scraper elsewhere is meant to read them).
	MetricsHost string
	// DashboardAllowedHosts are host names, besides IP addresses,
	// localhost and this machine's name, under which browsers may reach
	// the API server (its Host header check). Beyond loopback, reading
	// the API needs the token.
	DashboardAllowedHosts []string
	// MaxTaskRecords, on the head, bounds the control store's task table.
	MaxTaskRecords int
	// SpillDir is where the node's objects spill ("": its session
	// folder's spill/); SpillThreshold the fraction of its file system
	// past which nothing more spills (0: 0.95).
	SpillDir       string
	SpillThreshold float64

	// TLS protects every TCP link of the node with TLS 1.3 and
	// certificates on both ends (see setupTLS and internal/pki): the
	// head mints the cluster's CA in StateDir/tls at its first start;
	// another node joins with the join token (K10<fingerprint>::<secret>)
	// as Token. TLSCert, TLSKey and TLSCA take an operator's own PKI
	// instead. TLSCA alone gives the cluster's CA as a file: on the head
	// with its key TLSCAKey (used instead of minting one), on another
	// node the CA it pins when it joins with a plain secret as Token.
	TLS                    bool
	TLSCert, TLSKey, TLSCA string
	TLSCAKey               string

	// GCSReconnectTimeout is how long the node goes on without a heartbeat
	// answered by the control store (away, restarting, or cut off) before
	// it stops, fenced: its workers killed, its drivers told (0:
	// DefaultGCSReconnectTimeout).
	GCSReconnectTimeout time.Duration
}

// ErrTokenNeeded refuses to listen beyond loopback without a secret.
var ErrTokenNeeded = errors.New("node: listening beyond loopback needs a cluster token")

// Node is a running node.
type Node struct {
	cfg     Config
	session string
	gcs     *gcs.Server // the control store in this process, or nil
	gcsProc *gcsProc    // or the control store's process, or nil
	gcsAddr string
	raylet  *raylet.Raylet
	gc      *gcsClient // to the control store

	dash    *dashboard.HTTPServer // head: the API server, or nil
	dashSrc *dashboard.RPCSource
	jobs    *jobs.Manager // head: submitted jobs, or nil

	tlsDir    string // the node's credentials, when TLS is on
	joinToken string // head: what other machines join with

	stop chan struct{}
	wg   sync.WaitGroup

	fenceOnce sync.Once
	fenced    chan struct{} // closed when the node is fenced (see fence)
	fenceErr  error         // why; set before fenced is closed
}

// logf writes one of the node's own messages to Config.Log.
func (n *Node) logf(format string, args ...any) {
	if n.cfg.Log != nil {
		fmt.Fprintf(n.cfg.Log, format+"\n", args...)
	}
}

// NewToken makes a random cluster token.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MinTokenLength is the fewest characters a cluster token may have: 32,
// as many as the hex digits of the 128 random bits NewToken makes. A
// shorter one could be guessed by whoever can reach a port.
const MinTokenLength = 32

// CheckToken refuses a cluster token shorter than MinTokenLength (of a
// join token, its secret); the empty token (no authentication, loopback
// only) is left to Start.
func CheckToken(token string) error {
	if token = pki.Secret(token); token != "" && len(token) < MinTokenLength {
		return fmt.Errorf("node: the cluster token has %d characters, fewer than the %d that 128 bits need; use a random one (`openssl rand -hex 16`), or leave it out and the head makes one", len(token), MinTokenLength)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Start runs the node's daemons and joins (or, on the head, starts) the
// cluster.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if !isLoopback(cfg.Host) && cfg.Token == "" {
		return nil, fmt.Errorf("%w (host %s)", ErrTokenNeeded, cfg.Host)
	}
	if err := CheckToken(cfg.Token); err != nil {
		return nil, err
	}
	if !cfg.Head && cfg.Address == "" {
		return nil, errors.New("node: a worker node needs the head's address")
	}
	if cfg.NumCPUs <= 0 {
		return nil, fmt.Errorf("node: NumCPUs must be positive, got %g", cfg.NumCPUs)
	}
	if cfg.GCSReconnectTimeout < 0 {
		return nil, fmt.Errorf("node: GCSReconnectTimeout must not be negative, got %v", cfg.GCSReconnectTimeout)
	}
	if cfg.GCSReconnectTimeout == 0 {
		cfg.GCSReconnectTimeout = DefaultGCSReconnectTimeout
	}
	if err := PrepareStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		port int
	}{{"Port", cfg.Port}, {"RayletPort", cfg.RayletPort}, {"MetricsPort", cfg.MetricsPort}, {"DashboardPort", cfg.DashboardPort}} {
		if p.port < 0 || p.port > 65535 {
			return nil, fmt.Errorf("node: %s %d: want a TCP port, 0 to 65535", p.name, p.port)
		}
	}
	n := &Node{cfg: cfg, stop: make(chan struct{}), fenced: make(chan struct{})}
	n.session, _ = newSession(cfg.StateDir)
	if err := n.setupTLS(ctx); err != nil {
		return nil, err
	}
	if cfg.Head {
		if err := n.startGCS(ctx); err != nil {
			return nil, err
		}
	} else {
		n.gcsAddr = cfg.Address
	}
	n.gc = &gcsClient{addr: n.gcsAddr, token: cfg.Token, binDir: filepath.Join(cfg.StateDir, "bin"), register: n.info}
	rl, err := raylet.Start(raylet.Config{
		SessionDir:     n.session,
		NumCPUs:        cfg.NumCPUs,
		Resources:      cfg.Resources,
		StoreCapacity:  cfg.ObjectStoreMemory,
		SpillDir:       cfg.SpillDir,
		SpillThreshold: cfg.SpillThreshold,
		ListenTCP:      net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.RayletPort)),
		Token:          cfg.Token,
		Cluster:        n.gc,
		MetricsAddr:    net.JoinHostPort(cmp.Or(cfg.MetricsHost, "127.0.0.1"), strconv.Itoa(cfg.MetricsPort)),

		StoreSource:          "--object-store-memory",
		MemoryUsageThreshold: cfg.MemoryUsageThreshold,
	})
	if err != nil {
		n.closeGCS()
		return nil, err
	}
	n.raylet = rl
	n.gc.onView = n.takeView
	n.gc.onBundles = rl.BundleOp
	if err := n.gc.connect(ctx); err != nil {
		_ = rl.Close()
		n.closeGCS()
		return nil, err
	}
	n.wg.Add(1)
	go n.heartbeats()
	if cfg.Head && cfg.DashboardPort != 0 {
		n.startDashboard()
	}
	return n, nil
}

// startDashboard starts the head's API server, which reads the cluster
// from the control store and the nodes' raylets. A port in use moves it
// to a free one; a failure costs only the dashboard.
func (n *Node) startDashboard() {
	host := n.cfg.DashboardHost
	if host == "" {
		host = "127.0.0.1"
	}
	n.dashSrc = dashboard.NewRPCSource("tcp:"+n.gcsAddr, n.cfg.Token)
	// Submitted jobs run here, as drivers of this cluster.
	jc := jobs.Config{
		Dir: filepath.Join(n.session, "jobs"),
		Env: []string{"RAYO_ADDRESS=" + n.gcsAddr},
		// Each entrypoint gets the credential of the job its driver will
		// be, never the cluster's secret.
		JobEnv: func(string) []string {
			return []string{"RAYO_TOKEN=" + newJobCredential(n.cfg.Token), pki.EnvJobKey + "=" + pki.JobKey(n.cfg.Token)}
		},
		Hide: []string{"RAYO_REDIS_PASSWORD", "RAYO_TOKEN", "RAYO_TOKEN_FILE", "RAYO_TLS_CA_KEY"}, // the cluster's secrets, not theirs
		// The control store settles the state of a submission's job by
		// how its entrypoint ended (STOPPED, or FAILED with its exit).
		OnEnd: func(i jobs.Info) {
			n.gc.EndJob(&pb.JobRequest{SubmissionId: i.SubmissionID, Status: i.Status, Message: i.Message})
		},
	}
	if n.cfg.Log != nil {
		jc.Log = slog.New(slog.NewTextHandler(n.cfg.Log, nil))
	}
	mgr, err := jobs.New(jc)
	if err != nil {
		n.logf("rayo: no job submission: %v", err)
	}
	n.jobs = mgr
	h := dashboard.New(dashboard.Config{Source: n.dashSrc, UI: web.Handler(), Metrics: n.raylet.Metrics().Registry,
		Jobs: mgr, Token: n.cfg.Token, ReadsNeedToken: !isLoopback(host), AllowedHosts: n.cfg.DashboardAllowedHosts})
	tc := apiTLS(host)
	srv, err := dashboard.ListenTLS(net.JoinHostPort(host, strconv.Itoa(n.cfg.DashboardPort)), h, tc)
	if err != nil {
		n.logf("rayo: dashboard port %d: %v; using a free port", n.cfg.DashboardPort, err)
		srv, err = dashboard.ListenTLS(net.JoinHostPort(host, "0"), h, tc)
	}
	if err != nil {
		n.logf("rayo: no dashboard: %v", err)
		_ = n.dashSrc.Close()
		n.dashSrc = nil
		if n.jobs != nil {
			_ = n.jobs.Close()
			n.jobs = nil
		}
		return
	}
	n.dash = srv
}

// DashboardURL is the head's API server (https://HOST:PORT beyond
// loopback with TLS on, else http://HOST:PORT), or "".
func (n *Node) DashboardURL() string {
	if n.dash == nil {
		return ""
	}
	return n.dash.URL()
}

// startGCS starts the head's control store, in this process or as its
// own, and waits until it serves.
func (n *Node) startGCS(ctx context.Context) error {
	port := n.cfg.Port
	if port == 0 {
		port = DefaultPort
	}
	addr := net.JoinHostPort(n.cfg.Host, strconv.Itoa(port))
	if len(n.cfg.GCSCommand) == 0 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("node: control store: %w", err)
		}
		n.gcs, err = gcs.Serve(ln, gcs.Config{Token: n.cfg.Token, RedisAddress: n.cfg.RedisAddress, RedisPassword: n.cfg.RedisPassword, MaxTaskRecords: n.cfg.MaxTaskRecords})
		if err != nil {
			return fmt.Errorf("node: control store: %w", err)
		}
		n.gcsAddr = ln.Addr().String()
		return nil
	}
	n.gcsAddr = addr
	p, err := startGCSProc(ctx, n.cfg, addr, n.session)
	if err != nil {
		return err
	}
	n.gcsProc = p
	return nil
}

func (n *Node) closeGCS() {
	if n.gcs != nil {
		_ = n.gcs.Close()
	}
	if n.gcsProc != nil {
		_ = n.gcsProc.close()
	}
}

// info is the node's registration with the control store, with the
// actors its workers host.
func (n *Node) info() *pb.NodeInfo {
	total, avail, _ := n.raylet.Resources()
	id := n.raylet.NodeID()
	store, source := n.raylet.StoreSizing()
	return &pb.NodeInfo{
		NodeId: id[:], Address: n.raylet.TCPAddr(), Resources: total, Available: avail,
		SessionDir: n.session, Head: n.cfg.Head,
		ObjectStoreBytes: store, ObjectStoreSource: source, Labels: n.cfg.Labels,
		HostedActors: n.raylet.HostedActors(), // for a control store that restarted without its tables
	}
}

// heartbeats reports the node's resources to the control store and gives
// the raylet the cluster's view in return. When the control store goes
// away (a restart), it dials again and registers anew. The node is fenced
// (see fence) when the control store refuses it, having declared it dead,
// or when no heartbeat has been answered for GCSReconnectTimeout.
func (n *Node) heartbeats() {
	defer n.wg.Done()
	t := time.NewTicker(ReportInterval)
	defer t.Stop()
	id := n.raylet.NodeID()
	lastOK := time.Now() // the last heartbeat answered
	for {
		select {
		case <-n.stop:
			return
		case <-n.fenced:
			return
		case <-t.C:
		}
		away := func(err error) bool {
			if since := time.Since(lastOK); since > n.cfg.GCSReconnectTimeout {
				n.fence(fmt.Errorf("%w: no answer from the control store at %s for %v, past the reconnect timeout of %v (--gcs-reconnect-timeout): %w",
					ErrControlStoreLost, n.gcsAddr, since.Round(time.Millisecond), n.cfg.GCSReconnectTimeout, err))
				return true
			}
			return false
		}
		c := n.gc.current()
		if c == nil {
			// Within what is left of the reconnect timeout (a dial into a
			// partition hangs), so that the node stops on time.
			left := n.cfg.GCSReconnectTimeout - time.Since(lastOK)
			err := n.gc.reconnect(n.stop, max(left, 2*ReportInterval))
			if gcs.IsFenced(err) {
				n.fence(err)
				return
			}
			if err != nil {
				if away(err) {
					return
				}
				continue
			}
			c = n.gc.current()
			if c == nil {
				continue
			}
		}
		total, avail, pending := n.raylet.Resources()
		view := &pb.ClusterView{}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Call(ctx, rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:], Available: avail, Pending: pending, Total: total, PendingShapes: n.raylet.PendingShapes(), DrainNote: n.raylet.DrainNote()}, view)
		cancel()
		switch {
		case err == nil:
			lastOK = time.Now()
			n.takeView(view)
		case gcs.IsFenced(err):
			n.fence(err)
			return
		default:
			if away(err) {
				return
			}
		}
	}
}

// takeView passes the cluster's view to the raylet, unless the view says
// this node is DEAD: then the node is fenced.
func (n *Node) takeView(v *pb.ClusterView) {
	id := n.raylet.NodeID()
	for _, x := range v.Nodes {
		if string(x.NodeId) == string(id[:]) && x.State == gcs.StateDead {
			n.fence(gcs.FencedBy(x))
			return
		}
	}
	n.raylet.SetClusterView(v)
}

// ErrFenced is matched (errors.Is) by the cause a fenced node gives.
var ErrFenced = errors.New("node: fenced")

// ErrControlStoreLost is a node fenced because it heard nothing from the
// control store for its reconnect timeout.
var ErrControlStoreLost = errors.New("node: lost the control store")

// fence stops the node's work at once, as a node the cluster declared
// dead (or may have: it cannot tell) must, since that work has been or
// will be retried elsewhere: the raylet refuses new work, tells its
// drivers and kills its workers, and Fenced is closed so that whoever runs
// the node closes it and exits. It is idempotent.
func (n *Node) fence(cause error) {
	n.fenceOnce.Do(func() {
		id := n.raylet.NodeID()
		n.fenceErr = fmt.Errorf("%w: node %s stops: %w", ErrFenced, id.Name(), cause)
		n.logf("rayo: %v", n.fenceErr)
		n.raylet.Fence(cause.Error())
		close(n.fenced)
	})
}

// StoreSizing is the node's object store capacity and where the figure
// comes from.
func (n *Node) StoreSizing() (int64, string) { return n.raylet.StoreSizing() }

// GCSAddr is the control store's address (the cluster's address).
func (n *Node) GCSAddr() string { return n.gcsAddr }

// Local is what a driver on this machine needs to use the node's raylet.
func (n *Node) Local() ClusterInfo {
	return ClusterInfo{
		Address: n.gcsAddr, Token: n.cfg.Token, Host: n.cfg.Host, NodeAddr: n.raylet.TCPAddr(), Node: n.raylet.NodeName(),
		RayletSocket: n.raylet.Addr(), RayletPID: os.Getpid(), StoreFD: n.raylet.Arena().FD(),
		Dashboard: n.DashboardURL(), TLSDir: n.tlsDir, JoinToken: n.joinToken,
	}
}

// SessionDir is the node's session folder.
func (n *Node) SessionDir() string { return n.session }

// Fenced is closed when the node stopped its work because the control
// store declared it dead, or because it heard nothing from the control
// store for GCSReconnectTimeout; FenceErr then says why. The node should
// be closed, and its daemon exit: started again, it joins as a new node.
func (n *Node) Fenced() <-chan struct{} { return n.fenced }

// FenceErr is why the node was fenced (matching ErrFenced), or nil.
func (n *Node) FenceErr() error {
	select {
	case <-n.fenced:
		return n.fenceErr
	default:
		return nil
	}
}

// Drained is closed when a drain of this node (rayo drain) has ended:
// its running work finished or the drain's deadline passed. The daemon
// should then Close and exit cleanly.
func (n *Node) Drained() <-chan struct{} { return n.raylet.Drained() }

// reportDrain tells the control store, as a drained node leaves, what its
// drain did with the objects it held: its death reason says it, and so
// `rayo drain`.
func (n *Node) reportDrain() {
	note := n.raylet.DrainNote()
	if note == "" || n.gc == nil {
		return
	}
	c := n.gc.current()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	total, avail, pending := n.raylet.Resources()
	id := n.raylet.NodeID()
	_ = c.Call(ctx, rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:], Available: avail, Pending: pending, Total: total, DrainNote: note}, &pb.ClusterView{})
}

// Close leaves the cluster and stops the daemons.
func (n *Node) Close() error {
	if n.dash != nil {
		_ = n.dash.Close()
		_ = n.dashSrc.Close()
	}
	if n.jobs != nil {
		_ = n.jobs.Close() // submitted drivers end before their cluster
	}
	close(n.stop)
	n.wg.Wait()
	n.reportDrain()
	n.gc.close()
	err := n.raylet.Close()
	n.closeGCS()
	return err
}

// ListNodes asks a cluster's control store for its nodes.
func ListNodes(ctx context.Context, address, token string) ([]*pb.NodeInfo, error) {
	c, err := rpc.DialToken(ctx, "tcp:"+address, token, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the cluster at %s: %w", address, err)
	}
	defer c.Close()
	list := &pb.NodeList{}
	if err := c.Call(ctx, rpc.MListNodes, &pb.Empty{}, list); err != nil {
		return nil, fmt.Errorf("list nodes at %s: %w", address, err)
	}
	return list.Nodes, nil
}
