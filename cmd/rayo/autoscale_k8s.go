package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/autoscaler/kubernetes"
)

// kubernetesOptions are rayo start's flags for --autoscaler kubernetes:
// which RayoCluster the head scales, and how it reaches the API server
// when the in-cluster defaults (the pod's service account) do not hold.
type kubernetesOptions struct {
	cluster   string
	namespace string
	apiServer string
	tokenFile string
	caFile    string
}

// kubernetesTimeout bounds the head's first reading of its RayoCluster.
const kubernetesTimeout = 30 * time.Second

func (o *kubernetesOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.cluster, "kubernetes-cluster", "", "head, with --autoscaler kubernetes: the RayoCluster whose worker groups the autoscaler scales (the operator sets RAYO_KUBERNETES_CLUSTER)")
	f.StringVar(&o.namespace, "kubernetes-namespace", "", "head, with --autoscaler kubernetes: the RayoCluster's namespace (default: the pod's, from its service account)")
	f.StringVar(&o.apiServer, "kubernetes-api-server", "", "head, with --autoscaler kubernetes: the API server's URL (default: https:// and KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, as in a pod)")
	f.StringVar(&o.tokenFile, "kubernetes-token-file", "", "head, with --autoscaler kubernetes: the file holding the bearer token, read at every request (default: "+kubernetes.DefaultTokenFile+")")
	f.StringVar(&o.caFile, "kubernetes-ca-file", "", "head, with --autoscaler kubernetes: the PEM file of the API server's CA (default: "+kubernetes.DefaultCAFile+")")
}

// refuseWithout refuses the flags that name a RayoCluster when the
// provider (possibly none) is not kubernetes. The credentials' locations
// describe the machine rather than ask for anything, and are ignored.
func (o *kubernetesOptions) refuseWithout(f *pflag.FlagSet) error {
	for _, name := range []string{"kubernetes-cluster", "kubernetes-namespace"} {
		if f.Changed(name) {
			return fmt.Errorf("--%s needs --autoscaler kubernetes", name)
		}
	}
	return nil
}

// resolveKubernetes builds the kubernetes provider, reading the
// RayoCluster once: its worker groups are the node types.
func (o *autoscaleOptions) resolveKubernetes(f *pflag.FlagSet) error {
	if f.Changed("autoscaler-node-types") {
		return errors.New("--autoscaler-node-types is for --autoscaler local: with kubernetes the node types are the RayoCluster's worker groups")
	}
	if o.k8s.cluster == "" {
		return errors.New("--autoscaler kubernetes: name the RayoCluster to scale with --kubernetes-cluster (RAYO_KUBERNETES_CLUSTER, which the operator sets)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubernetesTimeout)
	defer cancel()
	p, err := kubernetes.New(ctx, kubernetes.Config{
		Cluster: o.k8s.cluster, Namespace: o.k8s.namespace,
		APIServer: o.k8s.apiServer, TokenFile: o.k8s.tokenFile, CAFile: o.k8s.caFile,
	})
	if err != nil {
		return fmt.Errorf("--autoscaler kubernetes: %w", err)
	}
	types := p.NodeTypes()
	if err := autoscaler.CheckNodeTypes(types); err != nil {
		p.Close()
		return fmt.Errorf("--autoscaler kubernetes: RayoCluster %s's worker groups: %w", o.k8s.cluster, err)
	}
	if !f.Changed("max-workers") {
		o.maxWorkers = 0
		for _, t := range types {
			o.maxWorkers += t.MaxWorkers
		}
		o.typesBound = o.maxWorkers
	}
	o.types, o.kube = types, p
	return nil
}
