package controllers

import (
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/internal/autoscaler"
)

// nodeUID is the user and group a node's daemon runs as (no root), and
// its pod's fsGroup.
const nodeUID = int64(65532)

// nodePod is the pod of one node: the head (group HeadGroup) or a worker
// of the named group, named name.
func nodePod(c *v1alpha1.RayoCluster, group, name string, spec v1alpha1.NodeSpec) (*corev1.Pod, error) {
	head := group == HeadGroup
	env, err := nodeEnv(c, group, name, spec)
	if err != nil {
		return nil, err
	}
	grace := int64(30)
	if !head {
		grace = workerGrace
	}
	uid := nodeUID
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace,
			Labels:          map[string]string{LabelCluster: c.Name, LabelGroup: group},
			OwnerReferences: []metav1.OwnerReference{ownerRef(c)}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext:               &corev1.PodSecurityContext{FSGroup: &uid},
			Containers:                    []corev1.Container{nodeContainer(head, spec, env)},
			Volumes:                       nodeVolumes(c, head),
		},
	}
	if head {
		pod.Spec.ServiceAccountName = HeadName(c.Name)
	}
	return pod, nil
}

// nodeEnv is the environment of a node's daemon, which rayo start reads
// its flags from.
func nodeEnv(c *v1alpha1.RayoCluster, group, name string, spec v1alpha1.NodeSpec) ([]corev1.EnvVar, error) {
	env := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "RAYO_BLOCK", Value: "true"},
		{Name: "RAYO_HOST", Value: "$(POD_IP)"},
		{Name: "RAYO_METRICS_HOST", Value: "$(POD_IP)"},
		// TLS (on by default) with the cluster's CA from the TLS Secret:
		// the head signs the nodes' certificates with it, the workers pin
		// it when they join. rayo commands in the pod (rayo status, the
		// preStop hook) trust it for the API server too.
		{Name: "RAYO_TLS_CA", Value: TLSDir + "/" + CACertKey},
	}
	nodeType := group
	if group == HeadGroup {
		env = append(env, headEnv(c)...)
	} else {
		env = append(env, corev1.EnvVar{Name: "RAYO_ADDRESS", Value: ServiceAddress(c)})
	}
	env = append(env,
		corev1.EnvVar{Name: "RAYO_RAYLET_PORT", Value: fmt.Sprint(PortRaylet)},
		corev1.EnvVar{Name: "RAYO_METRICS_PORT", Value: fmt.Sprint(PortMetrics)},
		corev1.EnvVar{Name: "RAYO_NUM_CPUS", Value: fmt.Sprint(spec.CPU)},
		corev1.EnvVar{Name: "RAYO_OBJECT_STORE_MEMORY", Value: fmt.Sprintf("%dMiB", storeMiB(spec))},
		corev1.EnvVar{Name: "RAYO_TOKEN_FILE", Value: TokenFile},
		corev1.EnvVar{Name: "RAYO_LABELS", Value: autoscaler.LabelInstance + "=" + name + "," + autoscaler.LabelNodeType + "=" + nodeType},
	)
	if len(spec.Resources) > 0 {
		b, err := json.Marshal(spec.Resources)
		if err != nil {
			return nil, fmt.Errorf("resources: %w", err)
		}
		env = append(env, corev1.EnvVar{Name: "RAYO_RESOURCES", Value: string(b)})
	}
	return env, nil
}

// headEnv is what the head's environment adds: the CA's key, the control
// store and the dashboard, and the autoscaler when the cluster has one.
func headEnv(c *v1alpha1.RayoCluster) []corev1.EnvVar {
	svc := HeadName(c.Name)
	env := []corev1.EnvVar{
		{Name: "RAYO_TLS_CA_KEY", Value: TLSDir + "/" + CAKeyKey},
		{Name: "RAYO_HEAD", Value: "true"},
		{Name: "RAYO_PORT", Value: fmt.Sprint(PortControlStore)},
		{Name: "RAYO_DASHBOARD_HOST", Value: "0.0.0.0"},
		{Name: "RAYO_DASHBOARD_PORT", Value: fmt.Sprint(PortDashboard)},
		{Name: "RAYO_DASHBOARD_ALLOWED_HOSTS", Value: strings.Join([]string{svc,
			svc + "." + c.Namespace, svc + "." + c.Namespace + ".svc", svc + "." + c.Namespace + ".svc.cluster.local"}, ",")},
	}
	if c.Spec.Autoscaling {
		env = append(env,
			corev1.EnvVar{Name: "RAYO_AUTOSCALER", Value: "kubernetes"},
			corev1.EnvVar{Name: "RAYO_KUBERNETES_CLUSTER", Value: c.Name},
			corev1.EnvVar{Name: "RAYO_KUBERNETES_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		)
		if c.Spec.IdleTimeoutSeconds > 0 {
			env = append(env, corev1.EnvVar{Name: "RAYO_IDLE_TIMEOUT", Value: fmt.Sprintf("%ds", c.Spec.IdleTimeoutSeconds)})
		}
	}
	return env
}

// nodeContainer is the container of a node's pod: rayo start, with env,
// as no root on a read-only root filesystem.
func nodeContainer(head bool, spec v1alpha1.NodeSpec, env []corev1.EnvVar) corev1.Container {
	image := spec.Image
	if image == "" {
		image = DefaultImage
	}
	readiness, liveness := nodeProbes(head)
	mem := resource.MustParse(fmt.Sprintf("%dMi", spec.MemoryMiB))
	cpu := resource.MustParse(fmt.Sprint(spec.CPU))
	res := corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}
	no, yes := false, true
	uid := nodeUID
	// The head cannot be drained: rayo stop ends the daemon. A worker
	// drains: no new work, its running work finishes (within
	// DrainDeadline), the owners of its objects hear of it, it exits.
	preStop := []string{"rayo", "stop"}
	if !head {
		preStop = []string{"rayo", "drain", "--self", "--deadline", DrainDeadline.String()}
	}
	return corev1.Container{
		Name:            "rayo",
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"start"},
		Env:             env,
		Ports:           nodePorts(head),
		Resources:       corev1.ResourceRequirements{Requests: res, Limits: res},
		ReadinessProbe:  readiness,
		LivenessProbe:   liveness,
		Lifecycle:       &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: preStop}}},
		SecurityContext: &corev1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
			AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "token", MountPath: "/etc/rayo/token", ReadOnly: true},
			{Name: "tls", MountPath: TLSDir, ReadOnly: true},
			{Name: "tmp", MountPath: "/tmp"},
		},
	}
}

// nodePorts are the ports a node's container listens on: the head's
// control store and dashboard too.
func nodePorts(head bool) []corev1.ContainerPort {
	ports := []corev1.ContainerPort{
		{Name: "raylet", ContainerPort: PortRaylet},
		{Name: "metrics", ContainerPort: PortMetrics},
	}
	if head {
		ports = append([]corev1.ContainerPort{{Name: "control-store", ContainerPort: PortControlStore},
			{Name: "dashboard", ContainerPort: PortDashboard}}, ports...)
	}
	return ports
}

// nodeProbes are a node's readiness and liveness probes: the head's
// healthz over HTTPS, a worker's raylet port and metrics.
func nodeProbes(head bool) (readiness, liveness *corev1.Probe) {
	if head {
		healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/api/v0/healthz", Port: intstr.FromString("dashboard"),
			Scheme: corev1.URISchemeHTTPS}}
		readiness = &corev1.Probe{ProbeHandler: healthz, PeriodSeconds: 5, TimeoutSeconds: 2}
		liveness = &corev1.Probe{ProbeHandler: healthz, InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 6}
		return readiness, liveness
	}
	readiness = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("raylet")}}, PeriodSeconds: 5}
	liveness = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/metrics", Port: intstr.FromString("metrics")}},
		InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 6}
	return readiness, liveness
}

// nodeVolumes are a node's pod's volumes: the token, the CA (its key only
// in the head's pod: the workers' volume projects the certificate alone)
// and a scratch /tmp.
func nodeVolumes(c *v1alpha1.RayoCluster, head bool) []corev1.Volume {
	// Readable by the pod's group (fsGroup), the daemon's user being no
	// root; the kubelet makes a Secret's files the fsGroup's.
	mode := int32(0o440)
	tlsItems := []corev1.KeyToPath{{Key: CACertKey, Path: CACertKey}}
	if head {
		tlsItems = append(tlsItems, corev1.KeyToPath{Key: CAKeyKey, Path: CAKeyKey})
	}
	return []corev1.Volume{
		{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TokenSecretName(c.Name), DefaultMode: &mode}}},
		{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TLSSecretName(c.Name),
			DefaultMode: &mode, Items: tlsItems}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
}
