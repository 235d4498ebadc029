package charttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// pod runs one rendered pod's container as a local `rayo start --block`
// process: the chart's environment, with what a kubelet would resolve
// stood in on this machine (the pod's IP is 127.0.0.1, each port a free
// one, the head's Service its control store's loopback address, the
// Secret volumes files).
type pod struct {
	name  string
	dir   string // state folder
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   bytes.Buffer
	ended chan struct{}
}

func (p *pod) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pod) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// freePort is a loopback port free just now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeVolume writes the keys of a Secret volume (its items when it lists
// some) to files in a folder, as the kubelet mounts it.
func writeVolume(t *testing.T, m manifests, v corev1.Volume, dir string) {
	t.Helper()
	s := m.secrets[v.Secret.SecretName]
	if s == nil {
		t.Fatalf("volume %s: no rendered Secret %s", v.Name, v.Secret.SecretName)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for k := range s.Data {
		keys[k] = k
	}
	if len(v.Secret.Items) > 0 {
		keys = map[string]string{}
		for _, it := range v.Secret.Items {
			keys[it.Key] = it.Path
		}
	}
	for k, path := range keys {
		if err := os.WriteFile(filepath.Join(dir, path), s.Data[k], 0o400); err != nil {
			t.Fatal(err)
		}
	}
}

// startPod starts spec's container; headAddr replaces the head Service's
// address in a worker's RAYO_ADDRESS.
func startPod(t *testing.T, rayo, name string, m manifests, spec corev1.PodSpec, headAddr string, ports map[string]int) *pod {
	t.Helper()
	root := filepath.Join(t.TempDir(), name)
	p := &pod{name: name, dir: filepath.Join(root, "state"), ended: make(chan struct{})}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c := spec.Containers[0]
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				local := filepath.Join(root, "volumes", v.Name)
				writeVolume(t, m, v, local)
				mounts[vm.MountPath] = local
			}
		}
	}
	env := []string{"RAYO_BLOCK=true", "RAYO_STATE_DIR=" + p.dir, "TMPDIR=" + p.dir, "PATH=" + os.Getenv("PATH"), "HOME=" + root}
	portEnv := map[string]string{"RAYO_PORT": "control-store", "RAYO_RAYLET_PORT": "raylet", "RAYO_METRICS_PORT": "metrics", "RAYO_DASHBOARD_PORT": "dashboard"}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			v = "127.0.0.1"
		case e.ValueFrom != nil:
			t.Fatalf("%s: env %s from %+v: not stood in", name, e.Name, e.ValueFrom)
		}
		v = strings.ReplaceAll(v, "$(POD_IP)", "127.0.0.1")
		if v == "0.0.0.0" {
			v = "127.0.0.1"
		}
		for mount, local := range mounts {
			if strings.HasPrefix(v, mount+"/") {
				v = local + strings.TrimPrefix(v, mount)
			}
		}
		if port, ok := portEnv[e.Name]; ok {
			v = fmt.Sprint(ports[port])
		}
		if e.Name == "RAYO_ADDRESS" {
			v = headAddr
		}
		env = append(env, e.Name+"="+v)
	}
	p.cmd = exec.Command(rayo, c.Args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.ended) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.ended
		if t.Failed() {
			t.Logf("%s said:\n%s", name, p.output())
		}
	})
	return p
}

// rayoIn runs a rayo command on a pod's "machine" (its state folder, as
// kubectl exec would) and returns its standard output.
func rayoIn(ctx context.Context, rayo string, p *pod, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, rayo, args...)
	cmd.Env = append(os.Environ(), "RAYO_STATE_DIR="+p.dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("rayo %v: %w: %s", args, err, stderr.String())
	}
	return out, nil
}

// The chart's pods come up as rayo runs them, with TLS on: the head takes
// the chart's CA from its Secret (it mints none: the join token it
// records pins the Secret's CA), and a worker, which has the token and
// the CA's certificate only, joins over TLS pinning it. Nothing but the
// kubelet's part is stood in: the processes are real `rayo start` runs of
// the rendered containers' arguments and environment.
func TestChartNodesJoinOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a rayo cluster")
	}
	rayo := filepath.Join(t.TempDir(), "rayo")
	build := exec.Command("go", "build", "-o", rayo, "./cmd/rayo")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/rayo: %v\n%s", err, out)
	}
	m := mustRender(t, map[string]any{"head": map[string]any{"cpu": 1, "memoryMiB": 512},
		"workerGroups": []any{map[string]any{"name": "default", "replicas": 1, "cpu": 1, "memoryMiB": 512, "objectStorePercent": 20}}})
	caSecret := m.secrets["demo-rayo-tls"]
	sum := sha256.Sum256(caOf(t, caSecret).Raw)
	fp := hex.EncodeToString(sum[:])

	headPorts := map[string]int{"control-store": freePort(t), "raylet": freePort(t), "metrics": freePort(t), "dashboard": freePort(t)}
	head := startPod(t, rayo, "head", m, m.statefulSets["demo-rayo-head"].Spec.Template.Spec, "", headPorts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rec struct {
		JoinToken string `json:"join_token"`
	}
	waitUntil(t, ctx, "the head's cluster record", func() bool {
		b, err := os.ReadFile(filepath.Join(head.dir, "cluster.json"))
		return err == nil && json.Unmarshal(b, &rec) == nil && rec.JoinToken != ""
	}, head)
	if !strings.HasPrefix(rec.JoinToken, "K10"+fp+"::") {
		t.Fatalf("the head's join token pins %.67s, want the chart's CA %s", rec.JoinToken, fp)
	}
	headAddr := fmt.Sprintf("127.0.0.1:%d", headPorts["control-store"])
	workerPorts := map[string]int{"raylet": freePort(t), "metrics": freePort(t)}
	worker := startPod(t, rayo, "worker", m, m.deployments["demo-rayo-worker-default"].Spec.Template.Spec, headAddr, workerPorts)
	waitUntil(t, ctx, "the worker joined", func() bool { return strings.Contains(worker.output(), "joined the cluster") }, worker)
	var st struct {
		Nodes []struct {
			State string `json:"state"`
		} `json:"nodes"`
	}
	waitUntil(t, ctx, "rayo status on the head showing 2 alive nodes", func() bool {
		out, err := rayoIn(ctx, rayo, head, "status", "--json")
		if err != nil || json.Unmarshal(out, &st) != nil {
			return false
		}
		alive := 0
		for _, n := range st.Nodes {
			if n.State == "ALIVE" {
				alive++
			}
		}
		return alive == 2
	}, head)
	// The worker's own certificate chains to the chart's CA: its TLS
	// folder's ca.crt is the Secret's.
	var wrec struct {
		TLSDir string `json:"tls_dir"`
	}
	b, err := os.ReadFile(filepath.Join(worker.dir, "cluster.json"))
	if err != nil || json.Unmarshal(b, &wrec) != nil || wrec.TLSDir == "" {
		t.Fatalf("the worker's record: %v %s", err, b)
	}
	wca, err := os.ReadFile(filepath.Join(wrec.TLSDir, "ca.crt"))
	if err != nil || !bytes.Equal(bytes.TrimSpace(wca), bytes.TrimSpace(caSecret.Data["ca.crt"])) {
		t.Fatalf("the worker trusts another CA than the chart's: %v\n%s", err, wca)
	}
	// A rayo command on the worker's machine (as its preStop hook runs)
	// reaches the head over TLS with the worker's credentials.
	if _, err := rayoIn(ctx, rayo, worker, "status", "--json"); err != nil {
		t.Fatalf("rayo status on the worker's machine: %v", err)
	}
}

// waitUntil polls cond until it holds, failing if ctx ends first or p's
// process ends.
func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool, p *pod) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within the deadline", what)
		case <-p.ended:
			t.Fatalf("%s: %s's process ended:\n%s", what, p.name, p.output())
		case <-time.After(100 * time.Millisecond): // the poll's period
		}
	}
}
