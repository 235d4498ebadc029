package controllers

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/internal/autoscaler"
)

// The labels the operator puts on the objects it makes.
const (
	// LabelCluster names the RayoCluster a pod, Service or Secret is of.
	LabelCluster = "rayo.io/cluster"
	// LabelGroup names a pod's worker group; the head's is HeadGroup.
	LabelGroup = "rayo.io/group"
	// HeadGroup is the head pod's LabelGroup value.
	HeadGroup = "head"
)

// Ports the nodes' containers listen on, as in the Helm chart.
const (
	PortControlStore = 6379
	PortRaylet       = 6380
	PortMetrics      = 8080
	PortDashboard    = 8265
)

// TokenFile is where a node's container reads the cluster token: the
// Secret mounted as a file (--token-file), kept out of argv and env.
const TokenFile = "/etc/rayo/token/token"

// DefaultImage is the image a NodeSpec without one runs.
const DefaultImage = "rayo:latest"

// defaultStorePercent is NodeSpec.ObjectStorePercent's default.
const defaultStorePercent = 30

// HeadName is the name of a cluster's head pod, and of its Service.
func HeadName(cluster string) string { return cluster + "-head" }

// TokenSecretName is the name of the Secret holding a cluster's token.
func TokenSecretName(cluster string) string { return cluster + "-token" }

// ServiceAddress is the head Service's control-store address as a pod
// in the namespace reaches it.
func ServiceAddress(c *v1alpha1.RayoCluster) string {
	return fmt.Sprintf("%s:%d", HeadName(c.Name), PortControlStore)
}

// DashboardURL is the head's API server as the cluster's DNS names it.
func DashboardURL(c *v1alpha1.RayoCluster) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", HeadName(c.Name), c.Namespace, PortDashboard)
}

// ownerRef makes c the controlling owner of what it is put on.
func ownerRef(c *v1alpha1.RayoCluster) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "RayoCluster",
		Name: c.Name, UID: c.UID, Controller: &yes, BlockOwnerDeletion: &yes}
}

// newToken returns a random cluster token.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a cluster token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// randomSuffix returns n random lower-case hex characters for pod names.
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b)[:n]
}

// tokenSecret is the cluster's token Secret.
func tokenSecret(c *v1alpha1.RayoCluster, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: TokenSecretName(c.Name), Namespace: c.Namespace,
			Labels: map[string]string{LabelCluster: c.Name}, OwnerReferences: []metav1.OwnerReference{ownerRef(c)}},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{"token": token},
	}
}

// headService is the cluster's head Service: its address (control
// store), raylet, metrics and API server.
func headService(c *v1alpha1.RayoCluster) *corev1.Service {
	port := func(name string, p int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: p, TargetPort: intstr.FromString(name), Protocol: corev1.ProtocolTCP}
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: HeadName(c.Name), Namespace: c.Namespace,
			Labels: map[string]string{LabelCluster: c.Name}, OwnerReferences: []metav1.OwnerReference{ownerRef(c)}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{LabelCluster: c.Name, LabelGroup: HeadGroup},
			Ports: []corev1.ServicePort{port("control-store", PortControlStore), port("raylet", PortRaylet),
				port("metrics", PortMetrics), port("dashboard", PortDashboard)},
		},
	}
}

// storeMiB is the object store's size for a node: its share of the pod's
// memory limit (the store is a memfd, charged to the container).
func storeMiB(s v1alpha1.NodeSpec) int64 {
	pct := s.ObjectStorePercent
	if pct == 0 {
		pct = defaultStorePercent
	}
	return int64(s.MemoryMiB) * int64(pct) / 100
}

// nodePod is the pod of one node: the head (group HeadGroup) or a worker
// of the named group, named name.
func nodePod(c *v1alpha1.RayoCluster, group, name string, spec v1alpha1.NodeSpec) (*corev1.Pod, error) {
	head := group == HeadGroup
	image := spec.Image
	if image == "" {
		image = DefaultImage
	}
	env := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "RAYO_BLOCK", Value: "true"},
		{Name: "RAYO_HOST", Value: "$(POD_IP)"},
		{Name: "RAYO_METRICS_HOST", Value: "$(POD_IP)"},
		// The nodes authenticate with the cluster's token Secret; rayo's
		// own TLS would need each worker to know the head's CA
		// fingerprint (a join token), which the head only mints at its
		// first start. Until the operator hands out the CA itself, the
		// pod network carries rayo's links in clear.
		{Name: "RAYO_TLS", Value: "false"},
	}
	nodeType := group
	if head {
		svc := HeadName(c.Name)
		env = append(env,
			corev1.EnvVar{Name: "RAYO_HEAD", Value: "true"},
			corev1.EnvVar{Name: "RAYO_PORT", Value: fmt.Sprint(PortControlStore)},
			corev1.EnvVar{Name: "RAYO_DASHBOARD_HOST", Value: "0.0.0.0"},
			corev1.EnvVar{Name: "RAYO_DASHBOARD_PORT", Value: fmt.Sprint(PortDashboard)},
			corev1.EnvVar{Name: "RAYO_DASHBOARD_ALLOWED_HOSTS", Value: strings.Join([]string{svc,
				svc + "." + c.Namespace, svc + "." + c.Namespace + ".svc", svc + "." + c.Namespace + ".svc.cluster.local"}, ",")},
		)
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
	ports := []corev1.ContainerPort{
		{Name: "raylet", ContainerPort: PortRaylet},
		{Name: "metrics", ContainerPort: PortMetrics},
	}
	var readiness, liveness *corev1.Probe
	if head {
		ports = append([]corev1.ContainerPort{{Name: "control-store", ContainerPort: PortControlStore},
			{Name: "dashboard", ContainerPort: PortDashboard}}, ports...)
		healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/api/v0/healthz", Port: intstr.FromString("dashboard")}}
		readiness = &corev1.Probe{ProbeHandler: healthz, PeriodSeconds: 5, TimeoutSeconds: 2}
		liveness = &corev1.Probe{ProbeHandler: healthz, InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 6}
	} else {
		readiness = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("raylet")}}, PeriodSeconds: 5}
		liveness = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/metrics", Port: intstr.FromString("metrics")}},
			InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 6}
	}
	mem := resource.MustParse(fmt.Sprintf("%dMi", spec.MemoryMiB))
	cpu := resource.MustParse(fmt.Sprint(spec.CPU))
	res := corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}
	no, yes := false, true
	uid := int64(65532)
	mode := int32(0o440)
	grace := int64(30)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace,
			Labels:          map[string]string{LabelCluster: c.Name, LabelGroup: group},
			OwnerReferences: []metav1.OwnerReference{ownerRef(c)}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext:               &corev1.PodSecurityContext{FSGroup: &uid},
			Containers: []corev1.Container{{
				Name:            "rayo",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"start"},
				Env:             env,
				Ports:           ports,
				Resources:       corev1.ResourceRequirements{Requests: res, Limits: res},
				ReadinessProbe:  readiness,
				LivenessProbe:   liveness,
				// rayo drain is not on main yet: rayo stop ends the daemon,
				// whose running tasks and actors are retried on other nodes.
				Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"rayo", "stop"}}}},
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
					AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "token", MountPath: "/etc/rayo/token", ReadOnly: true},
					{Name: "tmp", MountPath: "/tmp"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TokenSecretName(c.Name), DefaultMode: &mode}}},
				{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if head {
		pod.Spec.ServiceAccountName = HeadName(c.Name)
	}
	return pod, nil
}

// podReady reports whether p's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podDone reports whether p ended (it is not restarted: RestartPolicy
// Never, the operator replaces it).
func podDone(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// scaleDownOrder sorts pods to remove first: not ready, then newest.
func scaleDownOrder(pods []corev1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		ri, rj := podReady(&pods[i]), podReady(&pods[j])
		if ri != rj {
			return !ri
		}
		return pods[j].CreationTimestamp.Before(&pods[i].CreationTimestamp)
	})
}
