package controllers

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/rayo-dev/rayo/deploy/operator/api/v1alpha1"
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
