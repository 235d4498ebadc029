package rayo

import (
	"context"
	"fmt"

	"github.com/rayo-dev/rayo/internal/node"
)

// Node is one node of the cluster, as the control store knows it (Ray's
// ray.nodes()).
type Node struct {
	ID        string             // as NodeID and NodeAffinity name it
	Address   string             // its raylet's address
	Alive     bool               // false once declared dead
	Head      bool               // the head node
	Resources map[string]float64 // total
	Available map[string]float64 // free at its last report
}

// Nodes lists the cluster's nodes, dead ones included. An embedded cluster
// has one.
func Nodes(ctx context.Context) ([]Node, error) {
	cluster.Lock()
	rt, emb, addr, token := cluster.rt, cluster.embedded, cluster.gcsAddr, cluster.token
	cluster.Unlock()
	if rt == nil {
		return nil, ErrNotInitialized
	}
	if emb != nil {
		rl := emb.Raylet()
		total, avail, _ := rl.Resources()
		n := Node{ID: rl.NodeName(), Address: rl.Addr(), Alive: true, Head: true, Resources: map[string]float64{}, Available: map[string]float64{}}
		for _, r := range total {
			n.Resources[r.Name] = r.Quantity
		}
		for _, r := range avail {
			n.Available[r.Name] = r.Quantity
		}
		return []Node{n}, nil
	}
	list, err := node.ListNodes(ctx, addr, token)
	if err != nil {
		return nil, fmt.Errorf("rayo: %w", err)
	}
	out := make([]Node, 0, len(list))
	for _, x := range list {
		n := Node{ID: node.Name(x.NodeId), Address: x.Address, Alive: x.State == "ALIVE", Head: x.Head,
			Resources: map[string]float64{}, Available: map[string]float64{}}
		for _, r := range x.Resources {
			n.Resources[r.Name] = r.Quantity
		}
		for _, r := range x.Available {
			n.Available[r.Name] = r.Quantity
		}
		out = append(out, n)
	}
	return out, nil
}
