package standin

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// ServiceAccounts stands in for the kubelet's mounting of a pod's service
// account: the token, the API server's CA and the namespace, which a real
// kubelet projects into /var/run/secrets/kubernetes.io/serviceaccount,
// and the KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT variables.
// The stand-in writes the files to the pod's folder instead (no process
// of it may write under /var/run), and names them to rayo by the flag
// twins RAYO_KUBERNETES_TOKEN_FILE and RAYO_KUBERNETES_CA_FILE, as it
// names the ports it picks by theirs.
type ServiceAccounts struct {
	// APIServer is the API server's URL (https://HOST:PORT) that the
	// pods reach, as the kubernetes Service's address would be.
	APIServer string
	// CAData is the PEM of the API server's CA.
	CAData []byte
	// Token issues a token for a service account (a TokenRequest).
	Token func(ctx context.Context, namespace, serviceAccount string) (string, error)
}

// serviceAccountDir is the folder, under a pod's, of its account's files.
const serviceAccountDir = "serviceaccount"

// serviceAccount writes the files of pod's service account into dir and
// returns the environment that names them, or nothing when the pod names
// no service account (there is no "default" account in an API server
// without its controller-manager) or opts out of the token.
func (k *Kubelet) serviceAccount(ctx context.Context, pod *corev1.Pod, dir string) ([]string, error) {
	sa := k.Accounts
	if sa == nil || pod.Spec.ServiceAccountName == "" ||
		(pod.Spec.AutomountServiceAccountToken != nil && !*pod.Spec.AutomountServiceAccountToken) {
		return nil, nil
	}
	u, err := url.Parse(sa.APIServer)
	if err != nil || u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("service account: API server %q: want https://HOST:PORT", sa.APIServer)
	}
	token, err := sa.Token(ctx, pod.Namespace, pod.Spec.ServiceAccountName)
	if err != nil {
		return nil, fmt.Errorf("service account %s: token: %w", pod.Spec.ServiceAccountName, err)
	}
	local := filepath.Join(dir, "volumes", serviceAccountDir)
	if err := os.MkdirAll(local, 0o700); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"token": []byte(token), "ca.crt": sa.CAData, "namespace": []byte(pod.Namespace)} {
		if err := os.WriteFile(filepath.Join(local, name), data, 0o400); err != nil {
			return nil, fmt.Errorf("service account: %w", err)
		}
	}
	return []string{
		"KUBERNETES_SERVICE_HOST=" + u.Hostname(),
		"KUBERNETES_SERVICE_PORT=" + u.Port(),
		"RAYO_KUBERNETES_TOKEN_FILE=" + filepath.Join(local, "token"),
		"RAYO_KUBERNETES_CA_FILE=" + filepath.Join(local, "ca.crt"),
	}, nil
}
