package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/node"
)

func newDrainCmd() *cobra.Command {
	var address, token string
	var deadline time.Duration
	var wait, self bool
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Drain a node: no new work, its running work finishes, then it exits",
		Long: `Drain a node (NODE: its ID or a unique prefix, as rayo status prints it).
The node takes no new leases and the other nodes send it no work; its
running work finishes, or is killed when --deadline passes and retried
elsewhere; then it hands the objects it holds over to other nodes
(within the deadline too; it says which it could not move), its daemon
exits and it is listed DEAD, drained.
Draining the head is not supported. With --self instead of NODE, it
drains the node started on this machine (its state folder), as a
container's preStop hook does.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if self == (len(args) == 1) {
				return errors.New("give a node ID (or its prefix) or --self, not both")
			}
			c, err := node.Resolve(address, token)
			if err != nil {
				return err
			}
			if err := node.LoadTLS(c.TLSDir, ""); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			id := ""
			if self {
				if id, err = selfNode(ctx, c); err != nil {
					return err
				}
			} else {
				id = args[0]
			}
			rec, err := node.DrainNode(ctx, c.Address, c.Token, id, deadline)
			cancel()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "rayo: draining node %x (%s) until %s at the latest\n", rec.NodeId, rec.Address, time.UnixMilli(rec.DrainDeadlineUnixMs).UTC().Format(time.RFC3339))
			if !wait {
				return nil
			}
			// Wait for it to be gone: the deadline, and the time it takes to exit.
			ctx, cancel = context.WithDeadline(cmd.Context(), time.UnixMilli(rec.DrainDeadlineUnixMs).Add(time.Minute))
			defer cancel()
			n, err := node.WaitGone(ctx, c.Address, c.Token, rec.NodeId)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "rayo: node %x is gone: %s\n", n.NodeId, n.DeathReason)
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "the cluster's HOST:PORT (default: RAYO_ADDRESS, or the cluster started here)")
	cmd.Flags().StringVar(&token, "token", "", "the cluster's secret (default: RAYO_TOKEN, or the one recorded here)")
	cmd.Flags().DurationVar(&deadline, "deadline", gcs.DefaultDrainDeadline, "how long the node's running work may take before it is killed and retried elsewhere")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the node has exited")
	cmd.Flags().BoolVar(&self, "self", false, "drain the node started on this machine (RAYO_STATE_DIR) rather than NODE")
	return cmd
}

// selfNode finds the ID of the node started on this machine, by its
// raylet's address as its state folder records it.
func selfNode(ctx context.Context, c node.ClusterInfo) (string, error) {
	rec, err := node.ReadCluster(node.StateDir())
	if err != nil || rec.NodeAddr == "" {
		return "", fmt.Errorf("--self: no node started in %s: %v", node.StateDir(), err)
	}
	nodes, err := node.ListNodes(ctx, c.Address, c.Token)
	if err != nil {
		return "", err
	}
	for _, n := range nodes {
		if n.Address == rec.NodeAddr && n.State != gcs.StateDead {
			return fmt.Sprintf("%x", n.NodeId), nil
		}
	}
	return "", fmt.Errorf("--self: the cluster lists no live node at %s", rec.NodeAddr)
}
