package controllers

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
	"github.com/rayo-dev/rayo/internal/autoscaler"
	"github.com/rayo-dev/rayo/internal/pki"
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

// The cluster's CA, which the operator mints into the TLS Secret
// (TLSSecretName) and mounts in the pods under TLSDir: the head's has the
// certificate and the key (--tls-ca and --tls-ca-key: it signs the nodes'
// certificates with it), the workers' the certificate alone (--tls-ca: the
// CA they pin when they join, before they send the token).
const (
	TLSDir    = "/etc/rayo/tls"
	CACertKey = "ca.crt"
	CAKeyKey  = "ca.key"
)

// DrainDeadline is how long a worker pod's preStop hook (rayo drain
// --self) lets the node's running work finish before it is killed and
// retried elsewhere; the pod's terminationGracePeriodSeconds is
// workerGrace, which covers it and the daemon's exit.
const DrainDeadline = 50 * time.Second

// workerGrace is a worker pod's terminationGracePeriodSeconds.
const workerGrace = int64(DrainDeadline/time.Second) + 10

// DefaultImage is the image a NodeSpec without one runs.
const DefaultImage = "rayo:latest"

// defaultStorePercent is NodeSpec.ObjectStorePercent's default.
const defaultStorePercent = 30

// HeadName is the name of a cluster's head pod, and of its Service.
func HeadName(cluster string) string { return cluster + "-head" }

// TokenSecretName is the name of the Secret holding a cluster's token.
func TokenSecretName(cluster string) string { return cluster + "-token" }

// TLSSecretName is the name of the Secret holding a cluster's CA
// (CACertKey, CAKeyKey).
func TLSSecretName(cluster string) string { return cluster + "-tls" }

// ServiceAddress is the head Service's control-store address as a pod
// in the namespace reaches it.
func ServiceAddress(c *v1alpha1.RayoCluster) string {
	return fmt.Sprintf("%s:%d", HeadName(c.Name), PortControlStore)
}

// DashboardURL is the head's API server as the cluster's DNS names it:
// HTTPS, with the head's certificate of the cluster's CA (an API server
// beyond loopback serves TLS).
func DashboardURL(c *v1alpha1.RayoCluster) string {
	return fmt.Sprintf("https://%s.%s.svc:%d", HeadName(c.Name), c.Namespace, PortDashboard)
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

// newCA mints a cluster's CA: its certificate and its key, in PEM.
func newCA(c *v1alpha1.RayoCluster) (certPEM, keyPEM []byte, err error) {
	ca, err := pki.NewCA("rayo cluster CA " + c.Namespace + "/" + c.Name)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA's key: %w", err)
	}
	return pki.PEM(ca.Cert), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// tlsSecret is the cluster's TLS Secret: its CA's certificate and key.
func tlsSecret(c *v1alpha1.RayoCluster, certPEM, keyPEM []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName(c.Name), Namespace: c.Namespace,
			Labels: map[string]string{LabelCluster: c.Name}, OwnerReferences: []metav1.OwnerReference{ownerRef(c)}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{CACertKey: certPEM, CAKeyKey: keyPEM},
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
		// TLS (on by default) with the cluster's CA from the TLS Secret:
		// the head signs the nodes' certificates with it, the workers pin
		// it when they join. rayo commands in the pod (rayo status, the
		// preStop hook) trust it for the API server too.
		{Name: "RAYO_TLS_CA", Value: TLSDir + "/" + CACertKey},
	}
	nodeType := group
	if head {
		svc := HeadName(c.Name)
		env = append(env,
			corev1.EnvVar{Name: "RAYO_TLS_CA_KEY", Value: TLSDir + "/" + CAKeyKey},
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
		healthz := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/api/v0/healthz", Port: intstr.FromString("dashboard"),
			Scheme: corev1.URISchemeHTTPS}}
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
	// Readable by the pod's group (fsGroup), the daemon's user being no
	// root; the kubelet makes a Secret's files the fsGroup's.
	mode := int32(0o440)
	grace := int64(30)
	// The head cannot be drained: rayo stop ends the daemon. A worker
	// drains: no new work, its running work finishes (within
	// DrainDeadline), the owners of its objects hear of it, it exits.
	preStop := []string{"rayo", "stop"}
	tlsItems := []corev1.KeyToPath{{Key: CACertKey, Path: CACertKey}}
	if head {
		tlsItems = append(tlsItems, corev1.KeyToPath{Key: CAKeyKey, Path: CAKeyKey})
	} else {
		grace = workerGrace
		preStop = []string{"rayo", "drain", "--self", "--deadline", DrainDeadline.String()}
	}
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
				Lifecycle:       &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: preStop}}},
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
					AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "token", MountPath: "/etc/rayo/token", ReadOnly: true},
					{Name: "tls", MountPath: TLSDir, ReadOnly: true},
					{Name: "tmp", MountPath: "/tmp"},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TokenSecretName(c.Name), DefaultMode: &mode}}},
				// The CA's key only in the head's pod: the workers' volume
				// projects the certificate alone.
				{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: TLSSecretName(c.Name),
					DefaultMode: &mode, Items: tlsItems}}},
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
