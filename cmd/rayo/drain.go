package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/node"
)

func newDrainCmd() *cobra.Command {
	var address, token string
	var deadline time.Duration
	var wait bool
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Drain a node: no new work, its running work finishes, then it exits",
		Long: `Drain a node (NODE: its ID or a unique prefix, as rayo status prints it).
The node takes no new leases and the other nodes send it no work; its
running work finishes, or is killed when --deadline passes and retried
elsewhere; then its daemon exits and it is listed DEAD, drained.
Draining the head is not supported.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := node.Resolve(address, token)
			if err != nil {
				return err
			}
			if err := node.LoadTLS(c.TLSDir, ""); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			rec, err := node.DrainNode(ctx, c.Address, c.Token, args[0], deadline)
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
	return cmd
}
