// Package autoscaler grows and shrinks a cluster to fit its demand: the
// head reads the demand its nodes report, bin-packs it onto the node
// types it knows, and asks a Provider for nodes; nodes that stay idle
// are drained and released.
package autoscaler

import "context"

// Labels a provider puts on the nodes it launches (rayo start --labels),
// by which the autoscaler matches registered nodes to instances.
const (
	// LabelInstance names the provider's instance (a pod, a process).
	LabelInstance = "rayo.io/instance"
	// LabelNodeType names the node type the instance was launched as.
	LabelNodeType = "rayo.io/node-type"
)

// NodeType is a kind of node a provider can launch: the resources each
// one offers, and how many of them the cluster keeps at least and at
// most (the head is not counted).
type NodeType struct {
	Name       string
	Resources  map[string]float64
	MinWorkers int
	MaxWorkers int
}

// InstanceState is where an instance is in its life.
type InstanceState string

// The states of an instance.
const (
	// InstancePending: asked for, not yet running.
	InstancePending InstanceState = "PENDING"
	// InstanceRunning: its process or pod runs (its node may not have
	// registered yet).
	InstanceRunning InstanceState = "RUNNING"
	// InstanceTerminating: being stopped.
	InstanceTerminating InstanceState = "TERMINATING"
	// InstanceEnded: its process or pod has ended (its node drained and
	// left, or failed) but the provider keeps its place until it is
	// terminated; the autoscaler terminates it at once.
	InstanceEnded InstanceState = "ENDED"
)

// Instance is one node a provider launched or is launching.
type Instance struct {
	// ID is the provider's name for it, also its LabelInstance.
	ID       string
	NodeType string
	State    InstanceState
}

// Provider starts and stops the nodes of a cluster. Its methods are
// safe for concurrent use, and Launch and Terminate may return before
// the instances change state: the autoscaler reads Instances again.
type Provider interface {
	// NodeTypes are the kinds of node the provider can launch. The
	// autoscaler reads them at every round, and takes up a change.
	NodeTypes() []NodeType
	// Instances lists the instances the provider launched and has not
	// yet seen gone.
	Instances(ctx context.Context) ([]Instance, error)
	// Launch asks for count more instances of the named node type.
	Launch(ctx context.Context, nodeType string, count int) error
	// Terminate stops the instances with these IDs. The autoscaler has
	// drained their nodes first.
	Terminate(ctx context.Context, ids []string) error
}
