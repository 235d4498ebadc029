package core

import (
	"context"

	"github.com/rayo-dev/rayo/internal/rayletclient"
	"github.com/rayo-dev/rayo/internal/rpc"
)

// RayletDialer is how an owner reaches other nodes' raylets (a
// Config.DialRaylet): over TCP, presenting the cluster's token.
func RayletDialer(token string) func(ctx context.Context, addr string, h rpc.Handler) (RayletClient, error) {
	return func(ctx context.Context, addr string, h rpc.Handler) (RayletClient, error) {
		c, err := rayletclient.Dial(ctx, addr, token, h)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}
