// Package node runs the daemons of a standalone cluster: on the head, the
// control store (GCS) and a raylet; on every other node, a raylet that
// joins the head's control store and keeps telling it that it is alive.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
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
	StateDir  string // where session folders go
}

// ErrTokenNeeded refuses to listen beyond loopback without a secret.
var ErrTokenNeeded = errors.New("node: listening beyond loopback needs a cluster token")

// Node is a running node.
type Node struct {
	cfg     Config
	session string
	gcs     *gcs.Server
	gcsAddr string
	raylet  *raylet.Raylet
	gc      *gcsClient // to the control store

	stop chan struct{}
	lost chan struct{} // closed when the control store stays away LostAfter
	wg   sync.WaitGroup
}

// NewToken makes a random cluster token.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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
	if !cfg.Head && cfg.Address == "" {
		return nil, errors.New("node: a worker node needs the head's address")
	}
	if cfg.NumCPUs <= 0 {
		return nil, fmt.Errorf("node: NumCPUs must be positive, got %g", cfg.NumCPUs)
	}
	n := &Node{cfg: cfg, stop: make(chan struct{}), lost: make(chan struct{})}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	n.session = filepath.Join(cfg.StateDir, fmt.Sprintf("s-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:])))
	if cfg.Head {
		port := cfg.Port
		if port == 0 {
			port = DefaultPort
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(port)))
		if err != nil {
			return nil, fmt.Errorf("node: control store: %w", err)
		}
		n.gcs, err = gcs.Serve(ln, gcs.Config{Token: cfg.Token})
		if err != nil {
			return nil, fmt.Errorf("node: control store: %w", err)
		}
		n.gcsAddr = ln.Addr().String()
	} else {
		n.gcsAddr = cfg.Address
	}
	n.gc = &gcsClient{addr: n.gcsAddr, token: cfg.Token, binDir: filepath.Join(cfg.StateDir, "bin"), register: n.info}
	rl, err := raylet.Start(raylet.Config{
		SessionDir:    n.session,
		NumCPUs:       cfg.NumCPUs,
		Resources:     cfg.Resources,
		StoreCapacity: 0,
		ListenTCP:     net.JoinHostPort(cfg.Host, "0"),
		Token:         cfg.Token,
		Cluster:       n.gc,
	})
	if err != nil {
		n.closeGCS()
		return nil, err
	}
	n.raylet = rl
	if err := n.gc.connect(ctx); err != nil {
		_ = rl.Close()
		n.closeGCS()
		return nil, err
	}
	n.wg.Add(1)
	go n.heartbeats()
	return n, nil
}

func (n *Node) closeGCS() {
	if n.gcs != nil {
		_ = n.gcs.Close()
	}
}

// info is the node's registration with the control store.
func (n *Node) info() *pb.NodeInfo {
	total, avail, _ := n.raylet.Resources()
	id := n.raylet.NodeID()
	return &pb.NodeInfo{
		NodeId: id[:], Address: n.raylet.TCPAddr(), Resources: total, Available: avail,
		SessionDir: n.session, Head: n.cfg.Head,
	}
}

// heartbeats reports the node's resources to the control store and gives
// the raylet the cluster's view in return. When the control store goes
// away (a restart), it dials again and registers anew; after LostAfter
// without it, the node is lost.
func (n *Node) heartbeats() {
	defer n.wg.Done()
	t := time.NewTicker(ReportInterval)
	defer t.Stop()
	id := n.raylet.NodeID()
	var away time.Time // since when the control store is unreachable
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		c := n.gc.current()
		if c == nil {
			if away.IsZero() {
				away = time.Now()
			}
			ctx, cancel := context.WithTimeout(context.Background(), ReportInterval*2)
			err := n.gc.connect(ctx)
			cancel()
			if err != nil {
				if time.Since(away) > LostAfter {
					close(n.lost)
					return
				}
				continue
			}
			away = time.Time{}
			c = n.gc.current()
			if c == nil {
				continue
			}
		}
		_, avail, pending := n.raylet.Resources()
		view := &pb.ClusterView{}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Call(ctx, rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:], Available: avail, Pending: pending}, view)
		cancel()
		if err == nil {
			n.raylet.SetClusterView(view)
		}
	}
}

// GCSAddr is the control store's address (the cluster's address).
func (n *Node) GCSAddr() string { return n.gcsAddr }

// Local is what a driver on this machine needs to use the node's raylet.
func (n *Node) Local() ClusterInfo {
	return ClusterInfo{
		Address: n.gcsAddr, Token: n.cfg.Token, Host: n.cfg.Host, NodeAddr: n.raylet.TCPAddr(), Node: n.raylet.NodeName(),
		RayletSocket: n.raylet.Addr(), RayletPID: os.Getpid(), StoreFD: n.raylet.Arena().FD(),
	}
}

// SessionDir is the node's session folder.
func (n *Node) SessionDir() string { return n.session }

// Lost is closed when the node has been without its control store for
// LostAfter.
func (n *Node) Lost() <-chan struct{} { return n.lost }

// Close leaves the cluster and stops the daemons.
func (n *Node) Close() error {
	close(n.stop)
	n.wg.Wait()
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
