// Package kubernetes is the autoscaler's node provider for a cluster run
// by rayo's operator (deploy/operator): it scales a RayoCluster's worker
// groups by a merge patch of their replicas, naming the pods to remove
// on scale-down in the group's workersToDelete, as KubeRay's node
// provider does. It speaks to the API server with net/http and JSON only,
// so that rayo's module needs no Kubernetes libraries: in a pod it uses
// the service account's token and CA, and the address in
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rayo-dev/rayo/internal/autoscaler"
)

// The service account's files in a pod.
const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// DefaultTokenFile is the service account's token.
	DefaultTokenFile = serviceAccountDir + "/token"
	// DefaultCAFile is the API server's CA certificate.
	DefaultCAFile = serviceAccountDir + "/ca.crt"
	// DefaultNamespaceFile names the pod's namespace.
	DefaultNamespaceFile = serviceAccountDir + "/namespace"
)

// Labels the operator puts on a cluster's pods (deploy/operator).
const (
	labelCluster = "rayo.io/cluster"
	labelGroup   = "rayo.io/group"
	headGroup    = "head"
)

// conflictRetries bounds the retries of a patch that lost a race with
// another writer of the RayoCluster.
const conflictRetries = 5

// Config says which RayoCluster to scale and how to reach the API server.
// Its zero fields take the in-cluster defaults.
type Config struct {
	// Cluster names the RayoCluster (required).
	Cluster string
	// Namespace is the cluster's namespace (default: the service
	// account's namespace file).
	Namespace string
	// APIServer is the API server's URL (default: https:// and
	// KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT).
	APIServer string
	// TokenFile holds the bearer token, read at every request since
	// service account tokens are rotated (default DefaultTokenFile).
	TokenFile string
	// CAFile is the PEM bundle the API server's certificate is checked
	// against (default DefaultCAFile).
	CAFile string
	// Timeout bounds each request (default 10 s).
	Timeout time.Duration
}

// Provider scales one RayoCluster's worker groups. Its methods are safe
// for concurrent use.
type Provider struct {
	cfg     Config
	base    string // .../apis/rayo.io/v1alpha1/namespaces/NS/rayoclusters/NAME
	podsURL string
	http    *http.Client

	mu    sync.Mutex
	types []autoscaler.NodeType // as the cluster's spec last read gave them
	// pending maps the replicas without a pod that Instances last
	// listed (GROUP-pending-N) to their groups, and pods names the pods
	// it listed, for Terminate.
	pending map[string]string
	pods    map[string]bool
	// named are the pods Terminate has named in workersToDelete, while
	// Instances still lists them: naming one again (a round that saw it
	// before the operator removed it, which clears the list) changes
	// nothing.
	named map[string]bool
}

var _ autoscaler.Provider = (*Provider)(nil)

// New returns the provider of cfg's cluster, reading the cluster once to
// learn its worker groups (the node types).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Cluster == "" {
		return nil, errors.New("kubernetes provider: no RayoCluster named (the head's RAYO_KUBERNETES_CLUSTER)")
	}
	if cfg.APIServer == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("kubernetes provider: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset (not in a pod?): give the API server's URL")
		}
		cfg.APIServer = "https://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(cfg.APIServer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("kubernetes provider: API server %q: want https://HOST:PORT", cfg.APIServer)
	}
	if cfg.TokenFile == "" {
		cfg.TokenFile = DefaultTokenFile
	}
	if _, err := readToken(cfg.TokenFile); err != nil {
		return nil, fmt.Errorf("kubernetes provider: %w", err)
	}
	if cfg.Namespace == "" {
		b, err := os.ReadFile(DefaultNamespaceFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes provider: no namespace given and the service account's: %w", err)
		}
		cfg.Namespace = strings.TrimSpace(string(b))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if u.Scheme == "https" {
		if cfg.CAFile == "" {
			cfg.CAFile = DefaultCAFile
		}
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes provider: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubernetes provider: CA file %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	root := strings.TrimRight(cfg.APIServer, "/")
	ns := url.PathEscape(cfg.Namespace)
	p := &Provider{
		cfg:     cfg,
		base:    root + "/apis/rayo.io/v1alpha1/namespaces/" + ns + "/rayoclusters/" + url.PathEscape(cfg.Cluster),
		podsURL: root + "/api/v1/namespaces/" + ns + "/pods",
		http:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
	}
	if _, err := p.cluster(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Close releases the provider's idle connections.
func (p *Provider) Close() { p.http.CloseIdleConnections() }

// readToken reads a bearer token file.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return t, nil
}

// The parts of the resources the provider reads and writes.
type (
	workerGroup struct {
		Name            string             `json:"name"`
		CPU             float64            `json:"cpu"`
		Resources       map[string]float64 `json:"resources,omitempty"`
		MinReplicas     int                `json:"minReplicas"`
		MaxReplicas     int                `json:"maxReplicas"`
		Replicas        int                `json:"replicas"`
		WorkersToDelete []string           `json:"workersToDelete,omitempty"`
	}
	rayoCluster struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Spec struct {
			// WorkerGroups keeps every field as read, so that a patch
			// writing the list back loses none the provider does not know.
			WorkerGroups []map[string]json.RawMessage `json:"workerGroups"`
		} `json:"spec"`
	}
	pod struct {
		Metadata struct {
			Name              string            `json:"name"`
			Labels            map[string]string `json:"labels"`
			DeletionTimestamp *string           `json:"deletionTimestamp"`
		} `json:"metadata"`
		Status struct {
			Phase string `json:"phase"`
		} `json:"status"`
	}
)

// groups decodes the cluster's worker groups.
func (c *rayoCluster) groups() ([]workerGroup, error) {
	out := make([]workerGroup, len(c.Spec.WorkerGroups))
	for i, raw := range c.Spec.WorkerGroups {
		b, err := json.Marshal(raw)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &out[i]); err != nil {
			return nil, fmt.Errorf("worker group %d: %w", i, err)
		}
	}
	return out, nil
}

// do sends a request with the bearer token and decodes a 2xx answer's
// JSON into out (when not nil). A non-2xx answer is an *apiError.
func (p *Provider) do(ctx context.Context, method, u, contentType string, body []byte, out any) error {
	token, err := readToken(p.cfg.TokenFile)
	if err != nil {
		return err
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("kubernetes: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("kubernetes: %s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Code: resp.StatusCode, URL: u}
		var status struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &status) == nil && status.Message != "" {
			e.Message = status.Message
		} else {
			e.Message = strings.TrimSpace(string(b))
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("kubernetes: %s %s: the answer: %w", method, u, err)
		}
	}
	return nil
}

// apiError is an API server's refusal.
type apiError struct {
	Code    int
	URL     string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("kubernetes: %s answered %d: %s", e.URL, e.Code, e.Message)
}

// isNotFound reports whether err is a 404: no such object.
func isNotFound(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// isConflict reports whether err is a 409: the resource changed since read.
func isConflict(err error) bool {
	var e *apiError
	return errors.As(err, &e) && e.Code == http.StatusConflict
}

// cluster reads the RayoCluster and refreshes the node types from it.
func (p *Provider) cluster(ctx context.Context) (*rayoCluster, error) {
	var c rayoCluster
	if err := p.do(ctx, http.MethodGet, p.base, "", nil, &c); err != nil {
		return nil, fmt.Errorf("read RayoCluster %s/%s: %w", p.cfg.Namespace, p.cfg.Cluster, err)
	}
	groups, err := c.groups()
	if err != nil {
		return nil, fmt.Errorf("RayoCluster %s: %w", p.cfg.Cluster, err)
	}
	types := make([]autoscaler.NodeType, len(groups))
	for i, g := range groups {
		res := map[string]float64{"CPU": g.CPU}
		for k, v := range g.Resources {
			res[k] = v
		}
		types[i] = autoscaler.NodeType{Name: g.Name, Resources: res, MinWorkers: g.MinReplicas, MaxWorkers: g.MaxReplicas}
	}
	p.mu.Lock()
	p.types = types
	p.mu.Unlock()
	return &c, nil
}

// NodeTypes are the cluster's worker groups as last read.
func (p *Provider) NodeTypes() []autoscaler.NodeType {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.types)
}

// Instances lists the worker groups' pods (an ended pod as ended: the
// autoscaler terminates it, naming it for the operator to delete), and
// as pending instances the replicas asked for that have no pod yet
// (named GROUP-pending-N).
func (p *Provider) Instances(ctx context.Context) ([]autoscaler.Instance, error) {
	c, err := p.cluster(ctx)
	if err != nil {
		return nil, err
	}
	groups, err := c.groups()
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []pod `json:"items"`
	}
	q := url.Values{"labelSelector": {labelCluster + "=" + p.cfg.Cluster + "," + labelGroup + "!=" + headGroup}}
	if err := p.do(ctx, http.MethodGet, p.podsURL+"?"+q.Encode(), "", nil, &list); err != nil {
		return nil, fmt.Errorf("list the pods of RayoCluster %s: %w", p.cfg.Cluster, err)
	}
	var out []autoscaler.Instance
	live := map[string]int{}
	pending, pods := map[string]string{}, map[string]bool{}
	defer func() {
		p.mu.Lock()
		p.pending, p.pods = pending, pods
		for n := range p.named {
			if !pods[n] {
				delete(p.named, n)
			}
		}
		p.mu.Unlock()
	}()
	for _, pd := range list.Items {
		st := autoscaler.InstancePending
		switch {
		case pd.Metadata.DeletionTimestamp != nil:
			st = autoscaler.InstanceTerminating
		case pd.Status.Phase == "Succeeded" || pd.Status.Phase == "Failed":
			// With autoscaling on, the operator keeps an ended worker pod
			// in its group's count until it is named in workersToDelete.
			st = autoscaler.InstanceEnded
		case pd.Status.Phase == "Running":
			st = autoscaler.InstanceRunning
		}
		group := pd.Metadata.Labels[labelGroup]
		if st != autoscaler.InstanceTerminating {
			live[group]++
		}
		out = append(out, autoscaler.Instance{ID: pd.Metadata.Name, NodeType: group, State: st})
		pods[pd.Metadata.Name] = true
	}
	for _, g := range groups {
		for n := live[g.Name]; n < g.Replicas; n++ {
			id := fmt.Sprintf("%s-pending-%d", g.Name, n-live[g.Name])
			out = append(out, autoscaler.Instance{ID: id, NodeType: g.Name, State: autoscaler.InstancePending})
			pending[id] = g.Name
		}
	}
	return out, nil
}

// Launch raises the named group's replicas by count, within its maximum.
func (p *Provider) Launch(ctx context.Context, nodeType string, count int) error {
	if count <= 0 {
		return fmt.Errorf("kubernetes provider: launch %d nodes: want a count above 0", count)
	}
	return p.update(ctx, func(groups []workerGroup, raw []map[string]json.RawMessage) error {
		i := slices.IndexFunc(groups, func(g workerGroup) bool { return g.Name == nodeType })
		if i < 0 {
			return fmt.Errorf("kubernetes provider: RayoCluster %s has no worker group %q", p.cfg.Cluster, nodeType)
		}
		g := groups[i]
		if g.Replicas+count > g.MaxReplicas {
			return fmt.Errorf("kubernetes provider: worker group %s: %d replicas and %d more would pass its maxReplicas %d",
				nodeType, g.Replicas, count, g.MaxReplicas)
		}
		return setField(raw[i], "replicas", g.Replicas+count)
	})
}

// Terminate lowers the replicas of the groups of the pods named by ids
// and names the pods in their workersToDelete, so that the operator
// removes those and no others; a pod already named changes nothing. It
// refuses to take a group's running pods below its minReplicas; ended
// pods may take it below, for a moment: the autoscaler launches their
// replacements in the same round. A replica without a pod that Instances
// listed (GROUP-pending-N) lowers its group's replicas; a pod gone since
// it was listed is left alone: the operator removed it already (it
// removes an autoscaled group's pods only when named) or replaces it.
func (p *Provider) Terminate(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	t := &termination{byGroup: map[string][]string{}, goneBy: map[string]int{}, ended: map[string]bool{}}
	for _, id := range ids {
		if err := p.sortOut(ctx, t, id); err != nil {
			return err
		}
	}
	names := t.groups()
	if len(names) == 0 {
		return nil
	}
	var fresh []string
	err := p.update(ctx, func(groups []workerGroup, raw []map[string]json.RawMessage) error {
		fresh = fresh[:0]
		for name := range names {
			i := slices.IndexFunc(groups, func(g workerGroup) bool { return g.Name == name })
			if i < 0 {
				return fmt.Errorf("kubernetes provider: RayoCluster %s has no worker group %q", p.cfg.Cluster, name)
			}
			more, err := t.shrink(groups[i], raw[i])
			if err != nil {
				return err
			}
			fresh = append(fresh, more...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.remember(fresh)
	return nil
}

// termination is what one Terminate asks of the worker groups.
type termination struct {
	byGroup map[string][]string // group -> its pods to name in workersToDelete
	goneBy  map[string]int      // group -> its replicas without a pod to drop
	ended   map[string]bool     // pods whose process has ended
}

// sortOut reads the pod id and counts it in t: a worker pod of the
// cluster is to be named in its group, a replica without a pod is to be
// dropped, a pod already named or gone since it was listed is left
// alone; any other is refused.
func (p *Provider) sortOut(ctx context.Context, t *termination, id string) error {
	p.mu.Lock()
	done := p.named[id]
	p.mu.Unlock()
	if done {
		return nil
	}
	var pd pod
	if err := p.do(ctx, http.MethodGet, p.podsURL+"/"+url.PathEscape(id), "", nil, &pd); err != nil {
		if isNotFound(err) {
			p.mu.Lock()
			g, pending := p.pending[id]
			listed := p.pods[id]
			p.mu.Unlock()
			if pending {
				t.goneBy[g]++
				return nil
			}
			if listed {
				return nil // gone already
			}
		}
		return fmt.Errorf("kubernetes provider: terminate %s: %w", id, err)
	}
	if pd.Metadata.Labels[labelCluster] != p.cfg.Cluster || pd.Metadata.Labels[labelGroup] == headGroup || pd.Metadata.Labels[labelGroup] == "" {
		return fmt.Errorf("kubernetes provider: terminate %s: not a worker pod of RayoCluster %s", id, p.cfg.Cluster)
	}
	g := pd.Metadata.Labels[labelGroup]
	t.byGroup[g] = append(t.byGroup[g], id)
	t.ended[id] = pd.Status.Phase == "Succeeded" || pd.Status.Phase == "Failed"
	return nil
}

// groups names the worker groups t changes.
func (t *termination) groups() map[string]bool {
	names := map[string]bool{}
	for g := range t.byGroup {
		names[g] = true
	}
	for g := range t.goneBy {
		names[g] = true
	}
	return names
}

// shrink lowers one group's replicas in raw and names its pods not yet
// named in workersToDelete, which it returns; it refuses to take the
// group's running pods below its minReplicas.
func (t *termination) shrink(g workerGroup, raw map[string]json.RawMessage) ([]string, error) {
	var more []string
	running := 0
	for _, n := range t.byGroup[g.Name] {
		if !slices.Contains(g.WorkersToDelete, n) {
			more = append(more, n)
			if !t.ended[n] {
				running++
			}
		}
	}
	// Only running nodes are kept to the minimum; one that ended
	// or never came is gone already, and the autoscaler adds
	// another if the minimum or the demand needs it.
	if g.Replicas-running < g.MinReplicas {
		return nil, fmt.Errorf("kubernetes provider: worker group %s: removing %d of its %d replicas would go below its minReplicas %d",
			g.Name, running, g.Replicas, g.MinReplicas)
	}
	replicas := max(g.Replicas-len(more)-t.goneBy[g.Name], 0)
	if err := setField(raw, "replicas", replicas); err != nil {
		return nil, err
	}
	if len(more) > 0 {
		if err := setField(raw, "workersToDelete", append(slices.Clone(g.WorkersToDelete), more...)); err != nil {
			return nil, err
		}
	}
	return more, nil
}

// remember records the pods named in workersToDelete, so that naming
// one again changes nothing.
func (p *Provider) remember(named []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.named == nil {
		p.named = map[string]bool{}
	}
	for _, n := range named {
		p.named[n] = true
	}
}

// setField sets one field of a raw worker group.
func setField(raw map[string]json.RawMessage, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("kubernetes provider: %s: %w", name, err)
	}
	raw[name] = b
	return nil
}

// update reads the cluster, lets change edit its worker groups, and
// writes them back with a merge patch that carries the version read, so
// that a concurrent change (the operator clearing workersToDelete, a
// user's edit) makes it read and try again rather than be overwritten.
func (p *Provider) update(ctx context.Context, change func([]workerGroup, []map[string]json.RawMessage) error) error {
	for attempt := 0; ; attempt++ {
		c, err := p.cluster(ctx)
		if err != nil {
			return err
		}
		groups, err := c.groups()
		if err != nil {
			return err
		}
		if err := change(groups, c.Spec.WorkerGroups); err != nil {
			return err
		}
		patch := map[string]any{
			"metadata": map[string]any{"resourceVersion": c.Metadata.ResourceVersion},
			"spec":     map[string]any{"workerGroups": c.Spec.WorkerGroups},
		}
		body, err := json.Marshal(patch)
		if err != nil {
			return fmt.Errorf("kubernetes provider: patch: %w", err)
		}
		err = p.do(ctx, http.MethodPatch, p.base, "application/merge-patch+json", body, nil)
		if err == nil {
			return nil
		}
		if !isConflict(err) || attempt+1 >= conflictRetries {
			return fmt.Errorf("kubernetes provider: patch RayoCluster %s: %w", p.cfg.Cluster, err)
		}
	}
}
