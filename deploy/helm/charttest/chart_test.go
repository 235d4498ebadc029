// Package charttest renders the Helm chart deploy/helm/rayo with Helm's
// own Go library, as `helm template` would, and checks what it makes: the
// manifests decode strictly into Kubernetes' API types, and the head,
// the worker groups, the token, the object store's memory, the probes and
// Redis are as the values ask. It is a module of its own so that rayo's
// users do not inherit Helm's and Kubernetes' dependencies.
package charttest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

const chartDir = "../rayo"

// manifests are the rendered objects by kind and name.
type manifests struct {
	secrets      map[string]*corev1.Secret
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
	docs         []string // every rendered object's YAML, as rendered
}

// render renders the chart as the release "demo" in namespace "ml" with
// vals over its values.yaml, as an install without a cluster to look
// objects up in (helm template).
func render(t *testing.T, vals map[string]any) (manifests, error) {
	t.Helper()
	return renderWith(t, vals, nil)
}

// renderWith is render; with cfg, as an upgrade of the release on the API
// server cfg reaches, whose objects the chart's lookup calls find.
func renderWith(t *testing.T, vals map[string]any, cfg *rest.Config) (manifests, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load the chart: %v", err)
	}
	opts := common.ReleaseOptions{Name: "demo", Namespace: "ml", IsInstall: cfg == nil, IsUpgrade: cfg != nil}
	top, err := util.ToRenderValues(ch, vals, opts, nil)
	if err != nil {
		return manifests{}, err
	}
	var files map[string]string
	if cfg == nil {
		files, err = engine.Render(ch, top)
	} else {
		files, err = engine.RenderWithClient(ch, top, cfg)
	}
	if err != nil {
		return manifests{}, err
	}
	m := manifests{secrets: map[string]*corev1.Secret{}, services: map[string]*corev1.Service{},
		statefulSets: map[string]*appsv1.StatefulSet{}, deployments: map[string]*appsv1.Deployment{}}
	for name, text := range files {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(text, "\n---") {
			if strings.TrimSpace(strings.ReplaceAll(doc, "---", "")) == "" {
				continue
			}
			decode(t, name, doc, m)
			m.docs = append(m.docs, doc)
		}
	}
	return m, nil
}

// decode adds one rendered document to m, refusing any field the
// Kubernetes type lacks.
func decode(t *testing.T, file, doc string, m manifests) {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
		t.Fatalf("%s: not YAML: %v\n%s", file, err, doc)
	}
	if head.Kind == "" {
		// Only comments.
		return
	}
	strict := func(v any) {
		if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
			t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", file, head.Kind, head.Metadata.Name, err, doc)
		}
	}
	switch head.APIVersion + " " + head.Kind {
	case "v1 Secret":
		var o corev1.Secret
		strict(&o)
		m.secrets[o.Name] = &o
	case "v1 Service":
		var o corev1.Service
		strict(&o)
		m.services[o.Name] = &o
	case "apps/v1 StatefulSet":
		var o appsv1.StatefulSet
		strict(&o)
		m.statefulSets[o.Name] = &o
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		strict(&o)
		m.deployments[o.Name] = &o
	default:
		t.Fatalf("%s: unexpected %s %s", file, head.APIVersion, head.Kind)
	}
}

func mustRender(t *testing.T, vals map[string]any) manifests {
	t.Helper()
	m, err := render(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return m
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	return env
}

func names[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestDefaultRelease(t *testing.T) {
	m := mustRender(t, nil)
	checkDefaultObjects(t, m)
	checkDefaultHeadService(t, m)
	checkDefaultHead(t, m.statefulSets["demo-rayo-head"])
	checkDefaultWorker(t, m.deployments["demo-rayo-worker-default"])
}

// checkDefaultObjects checks the default release's objects by kind and
// name, its CA Secret and its generated token.
func checkDefaultObjects(t *testing.T, m manifests) {
	t.Helper()
	if got, want := names(m.statefulSets), []string{"demo-rayo-head"}; !slices.Equal(got, want) {
		t.Errorf("statefulsets %v, want %v", got, want)
	}
	if got, want := names(m.deployments), []string{"demo-rayo-worker-default"}; !slices.Equal(got, want) {
		t.Errorf("deployments %v, want %v (no Redis by default)", got, want)
	}
	if got, want := names(m.services), []string{"demo-rayo-head", "demo-rayo-head-pods"}; !slices.Equal(got, want) {
		t.Errorf("services %v, want %v", got, want)
	}
	if got, want := names(m.secrets), []string{"demo-rayo-tls", "demo-rayo-token"}; !slices.Equal(got, want) {
		t.Errorf("secrets %v, want %v", got, want)
	}
	checkCASecret(t, m.secrets["demo-rayo-tls"])
	if tok := m.secrets["demo-rayo-token"].Data["token"]; len(tok) != 32 {
		t.Errorf("the generated token is %q, want 32 random characters", tok)
	}
}

// checkDefaultHeadService checks the head's Service in the default
// release: its ports, its headless twin and its selector.
func checkDefaultHeadService(t *testing.T, m manifests) {
	t.Helper()
	// The head's Service carries the control store, raylet, metrics and
	// API server ports, to the head's pod.
	svc := m.services["demo-rayo-head"]
	var ports []int32
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Port)
	}
	if want := []int32{6379, 6380, 8080, 8265}; !slices.Equal(ports, want) {
		t.Errorf("head service ports %v, want %v", ports, want)
	}
	head := m.statefulSets["demo-rayo-head"]
	if head.Spec.ServiceName != "demo-rayo-head-pods" || m.services["demo-rayo-head-pods"].Spec.ClusterIP != "None" {
		t.Errorf("the head's governing service is %q, want the headless demo-rayo-head-pods", head.Spec.ServiceName)
	}
	for k, v := range svc.Spec.Selector {
		if head.Spec.Template.Labels[k] != v {
			t.Errorf("the head service selects %s=%s, which the head pod lacks", k, v)
		}
	}
	if svc.Spec.Selector["app.kubernetes.io/component"] != "head" {
		t.Errorf("the head service selects %v: worker pods too", svc.Spec.Selector)
	}
}

// checkDefaultHead checks the head's container in the default release:
// its arguments, its environment and its probes.
func checkDefaultHead(t *testing.T, head *appsv1.StatefulSet) {
	t.Helper()
	hc := head.Spec.Template.Spec.Containers[0]
	if want := []string{"start", "--head"}; !slices.Equal(hc.Args, want) {
		t.Errorf("head args %q, want %q", hc.Args, want)
	}
	checkNode(t, "head", head.Spec.Template.Spec, 4096, "1228MiB")
	env := envOf(hc)
	if env["RAYO_PORT"].Value != "6379" || env["RAYO_DASHBOARD_PORT"].Value != "8265" || env["RAYO_DASHBOARD_HOST"].Value != "0.0.0.0" {
		t.Errorf("head env %v", hc.Env)
	}
	if _, ok := env["RAYO_REDIS_ADDRESS"]; ok {
		t.Errorf("Redis without redis.enabled")
	}
	// Beyond loopback, the API server serves HTTPS.
	if p := hc.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/api/v0/healthz" || p.HTTPGet.Port.String() != "dashboard" ||
		p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("head readiness probe %+v, want GET https /api/v0/healthz on the dashboard port", p)
	}
	if p := hc.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/api/v0/healthz" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("head liveness probe %+v, want GET https /api/v0/healthz", p)
	}
}

// checkDefaultWorker checks the default worker group's Deployment: its
// replicas, arguments, head address, probes and selector.
func checkDefaultWorker(t *testing.T, w *appsv1.Deployment) {
	t.Helper()
	if w.Spec.Replicas == nil || *w.Spec.Replicas != 1 {
		t.Errorf("worker replicas %v, want 1", w.Spec.Replicas)
	}
	wc := w.Spec.Template.Spec.Containers[0]
	if want := []string{"start"}; !slices.Equal(wc.Args, want) {
		t.Errorf("worker args %q, want %q", wc.Args, want)
	}
	if got := envOf(wc)["RAYO_ADDRESS"].Value; got != "demo-rayo-head:6379" {
		t.Errorf("workers join %q, want the head's service demo-rayo-head:6379", got)
	}
	checkNode(t, "worker", w.Spec.Template.Spec, 4096, "1228MiB")
	if p := wc.ReadinessProbe; p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "raylet" {
		t.Errorf("worker readiness probe %+v, want the raylet's port", p)
	}
	if p := wc.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/metrics" || p.HTTPGet.Port.String() != "metrics" {
		t.Errorf("worker liveness probe %+v, want GET /metrics", p)
	}
	for k, v := range w.Spec.Selector.MatchLabels {
		if w.Spec.Template.Labels[k] != v {
			t.Errorf("the worker deployment selects %s=%s, which its pods lack", k, v)
		}
	}
}

// checkNode checks what every node's pod has: the token mounted as a file
// (in no argument and no variable), the store's memory inside the pod's
// memory request and limit, ports fixed, a preStop hook, a writable /tmp.
func checkNode(t *testing.T, what string, spec corev1.PodSpec, memMiB int64, store string) {
	t.Helper()
	c := spec.Containers[0]
	env := envOf(c)
	if env["RAYO_TOKEN_FILE"].Value != "/etc/rayo/token/token" {
		t.Errorf("%s: RAYO_TOKEN_FILE %q", what, env["RAYO_TOKEN_FILE"].Value)
	}
	if _, ok := env["RAYO_TOKEN"]; ok {
		t.Errorf("%s: the token is in the environment", what)
	}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if strings.Contains(a, "token") {
			t.Errorf("%s: the token is in argv: %q", what, a)
		}
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/etc/rayo/token" && m.ReadOnly {
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "demo-rayo-token" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("%s: the token Secret is not mounted read-only at /etc/rayo/token", what)
	}
	checkNodeTLS(t, what, spec, "demo-rayo-tls")
	if spec.SecurityContext == nil || spec.SecurityContext.FSGroup == nil || c.SecurityContext == nil || c.SecurityContext.RunAsUser == nil ||
		*spec.SecurityContext.FSGroup != *c.SecurityContext.RunAsUser {
		t.Errorf("%s: the token file is not readable by the daemon's user (fsGroup and runAsUser differ)", what)
	}
	if env["RAYO_HOST"].Value != "$(POD_IP)" || env["POD_IP"].ValueFrom == nil || env["POD_IP"].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("%s: does not listen on the pod's IP: %v", what, c.Env)
	}
	if env["RAYO_RAYLET_PORT"].Value != "6380" || env["RAYO_METRICS_PORT"].Value != "8080" {
		t.Errorf("%s: ports not fixed: %v", what, c.Env)
	}
	if got := env["RAYO_OBJECT_STORE_MEMORY"].Value; got != store {
		t.Errorf("%s: RAYO_OBJECT_STORE_MEMORY %q, want %q", what, got, store)
	}
	req, lim := c.Resources.Requests.Memory(), c.Resources.Limits.Memory()
	if req.Value() != memMiB<<20 || lim.Value() != memMiB<<20 {
		t.Errorf("%s: memory request %v and limit %v, want %d MiB both (the store included)", what, req, lim, memMiB)
	}
	var storeMiB int64
	if _, err := fmt.Sscanf(store, "%dMiB", &storeMiB); err != nil || storeMiB<<20 >= lim.Value() {
		t.Errorf("%s: store %s does not fit in the memory limit %v", what, store, lim)
	}
	// A worker drains itself (within the grace period, 30 s by default);
	// the head, which cannot be drained, stops.
	preStop := []string{"rayo", "drain", "--self", "--deadline", "25s"}
	if strings.HasPrefix(what, "head") {
		preStop = []string{"rayo", "stop"}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!slices.Equal(c.Lifecycle.PreStop.Exec.Command, preStop) {
		t.Errorf("%s: preStop %+v, want %q", what, c.Lifecycle, preStop)
	}
	tmp := false
	for _, m := range c.VolumeMounts {
		tmp = tmp || m.MountPath == "/tmp"
	}
	if !tmp {
		t.Errorf("%s: no writable /tmp (the root file system is read-only)", what)
	}
}

func TestWorkerGroupsAndSizes(t *testing.T) {
	m := mustRender(t, map[string]any{
		"head": map[string]any{"cpu": 4, "memoryMiB": 8192, "objectStorePercent": 50},
		"workerGroups": []any{
			map[string]any{"name": "cpu", "replicas": 3, "cpu": 8, "memoryMiB": 16384, "objectStorePercent": 25},
			map[string]any{"name": "gpu", "replicas": 0, "cpu": 4, "memoryMiB": 1000, "objectStorePercent": 30,
				"customResources": map[string]any{"GPU": 1}},
		},
	})
	if got, want := names(m.deployments), []string{"demo-rayo-worker-cpu", "demo-rayo-worker-gpu"}; !slices.Equal(got, want) {
		t.Fatalf("deployments %v, want %v", got, want)
	}
	checkNode(t, "head", m.statefulSets["demo-rayo-head"].Spec.Template.Spec, 8192, "4096MiB")
	cpu := m.deployments["demo-rayo-worker-cpu"]
	checkNode(t, "cpu group", cpu.Spec.Template.Spec, 16384, "4096MiB")
	if *cpu.Spec.Replicas != 3 {
		t.Errorf("cpu group replicas %d, want 3", *cpu.Spec.Replicas)
	}
	gpu := m.deployments["demo-rayo-worker-gpu"]
	checkNode(t, "gpu group", gpu.Spec.Template.Spec, 1000, "300MiB")
	env := envOf(gpu.Spec.Template.Spec.Containers[0])
	if env["RAYO_RESOURCES"].Value != `{"GPU":1}` || env["RAYO_NUM_CPUS"].Value != "4" {
		t.Errorf("gpu group env %v", gpu.Spec.Template.Spec.Containers[0].Env)
	}
	if cpu.Spec.Selector.MatchLabels["rayo.dev/worker-group"] == gpu.Spec.Selector.MatchLabels["rayo.dev/worker-group"] {
		t.Errorf("two groups' deployments select the same pods")
	}
}

func TestTokenChoices(t *testing.T) {
	m := mustRender(t, map[string]any{"token": map[string]any{"value": "given-token"}})
	if got := string(m.secrets["demo-rayo-token"].Data["token"]); got != "given-token" {
		t.Errorf("token %q, want the given one", got)
	}
	m = mustRender(t, map[string]any{"token": map[string]any{"existingSecret": "mine"}})
	if _, ok := m.secrets["demo-rayo-token"]; ok {
		t.Errorf("a token Secret made beside an existing one")
	}
	for _, v := range m.statefulSets["demo-rayo-head"].Spec.Template.Spec.Volumes {
		if v.Name == "token" && (v.Secret == nil || v.Secret.SecretName != "mine") {
			t.Errorf("the head mounts %+v, want the Secret mine", v)
		}
	}
}

func TestRedis(t *testing.T) {
	m := mustRender(t, map[string]any{"redis": map[string]any{"enabled": true, "passwordSecret": "redis-pw"}})
	if _, ok := m.deployments["demo-rayo-redis"]; !ok {
		t.Fatalf("no Redis deployment: %v", names(m.deployments))
	}
	if _, ok := m.services["demo-rayo-redis"]; !ok {
		t.Fatalf("no Redis service: %v", names(m.services))
	}
	env := envOf(m.statefulSets["demo-rayo-head"].Spec.Template.Spec.Containers[0])
	if env["RAYO_REDIS_ADDRESS"].Value != "demo-rayo-redis:6379" {
		t.Errorf("RAYO_REDIS_ADDRESS %q", env["RAYO_REDIS_ADDRESS"].Value)
	}
	if pw := env["RAYO_REDIS_PASSWORD"].ValueFrom; pw == nil || pw.SecretKeyRef == nil || pw.SecretKeyRef.Name != "redis-pw" {
		t.Errorf("RAYO_REDIS_PASSWORD %+v, want from the Secret redis-pw", env["RAYO_REDIS_PASSWORD"])
	}
	we := envOf(m.deployments["demo-rayo-worker-default"].Spec.Template.Spec.Containers[0])
	if _, ok := we["RAYO_REDIS_ADDRESS"]; ok {
		t.Errorf("a worker node is given Redis (only the head's control store uses it)")
	}

	m = mustRender(t, map[string]any{"redis": map[string]any{"enabled": true, "address": "redis.infra:6379"}})
	if _, ok := m.deployments["demo-rayo-redis"]; ok {
		t.Errorf("a Redis deployment beside an external Redis")
	}
	if got := envOf(m.statefulSets["demo-rayo-head"].Spec.Template.Spec.Containers[0])["RAYO_REDIS_ADDRESS"].Value; got != "redis.infra:6379" {
		t.Errorf("RAYO_REDIS_ADDRESS %q, want the external one", got)
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name string
		vals map[string]any
		want string
	}{
		{"store above 90%", map[string]any{"head": map[string]any{"objectStorePercent": 95}}, "objectStorePercent: want 1 to 90"},
		{"no memory", map[string]any{"workerGroups": []any{map[string]any{"name": "a", "replicas": 1, "cpu": 1, "memoryMiB": 0, "objectStorePercent": 30}}}, "memoryMiB: want a whole number"},
		{"a group name Kubernetes refuses", map[string]any{"workerGroups": []any{map[string]any{"name": "Big_Nodes", "replicas": 1, "cpu": 1, "memoryMiB": 1024, "objectStorePercent": 30}}}, `name "Big_Nodes"`},
		{"a group twice", map[string]any{"workerGroups": []any{
			map[string]any{"name": "a", "replicas": 1, "cpu": 1, "memoryMiB": 1024, "objectStorePercent": 30},
			map[string]any{"name": "a", "replicas": 1, "cpu": 1, "memoryMiB": 1024, "objectStorePercent": 30},
		}}, `the name "a" is given twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
