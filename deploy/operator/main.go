// Command operator runs rayo's Kubernetes operator, the KubeRay
// analogue: it reconciles RayoCluster resources into the pods of a rayo
// cluster (a head and worker groups) and RayoJob resources into
// submissions to a cluster's API server. Install the CRDs in config/crd
// first; the operator uses the in-cluster config, or KUBECONFIG.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/rayo-dev/rayo/deploy/operator/controllers"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rayo-operator:", err)
		os.Exit(1)
	}
}

func run() error {
	metricsAddr := flag.String("metrics-bind-address", ":8080", "the operator's /metrics address; 0 turns it off")
	probeAddr := flag.String("health-probe-bind-address", ":8081", "the operator's /healthz and /readyz address")
	leaderElect := flag.Bool("leader-elect", false, "elect one leader among several operator replicas")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	scheme, err := controllers.NewScheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes config: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         *leaderElect,
		LeaderElectionID:       "rayo-operator.rayo.io",
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := controllers.Setup(mgr, nil); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	return nil
}
