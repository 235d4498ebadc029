// Package standin plays the parts of a Kubernetes node that the
// operator's tests run without: the kubelet, the scheduler, the
// container runtime, cluster DNS and kube-proxy. It is for tests only.
//
// What is real in those tests: the API server and etcd (envtest), the
// operator's controllers, and the rayo processes (`rayo start --block`,
// as the pods' containers would run them). What is stood in, here:
//
//   - scheduling: every pod is bound to one node, "standin";
//   - the container runtime: a pod runs as a local process of the rayo
//     binary, with the container's args and environment, in a state
//     folder of its own (RAYO_STATE_DIR) and without any isolation;
//   - the pod network: every pod's IP is 127.0.0.1, and since all pods
//     share the loopback, each named container port is given a free port
//     instead, passed through the rayo flag twin that sets it;
//   - DNS and kube-proxy: a HOST:PORT naming a Service in an env value
//     is rewritten to the loopback port of the ready pod it selects;
//   - volumes: a Secret volume's keys (those of its items, when it lists
//     some) are written to files, and env values under its mount path are
//     rewritten to them; a pod's service account token and CA are written
//     to files too (Accounts);
//   - probes: readiness (httpGet, tcpSocket) is checked against the
//     process's ports; an HTTPS probe whose server answers in plain HTTP
//     (rayo's API server does on loopback, where the stood-in pods live)
//     is tried again over HTTP; liveness probes are not run;
//   - termination: a deleted pod's preStop exec hook runs (its command's
//     "rayo" is the rayo binary, in the container's environment), within
//     the pod's grace period; then SIGTERM, and SIGKILL after 10 s;
//   - kubectl exec: Exec runs a rayo command in a pod's container.
package standin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NodeName is the node the stand-in binds every pod to.
const NodeName = "standin"

// portEnv is the rayo flag twin that sets each named container port.
var portEnv = map[string]string{
	"control-store": "RAYO_PORT",
	"raylet":        "RAYO_RAYLET_PORT",
	"metrics":       "RAYO_METRICS_PORT",
	"dashboard":     "RAYO_DASHBOARD_PORT",
}

// syncEvery is how often the kubelet compares the pods with its processes.
const syncEvery = 200 * time.Millisecond

// Kubelet runs the pods of one namespace as local processes.
type Kubelet struct {
	// Client reads and writes pods, bindings, Services and Secrets.
	Client client.Client
	// Namespace is the namespace whose pods it runs.
	Namespace string
	// Binary is the rayo executable a container runs (its image is
	// ignored).
	Binary string
	// Dir holds each pod's folder: state, volumes and its log.
	Dir string
	// Accounts, when set, mounts the pods' service accounts (see
	// ServiceAccounts); when nil, pods run without them.
	Accounts *ServiceAccounts

	mu     sync.Mutex
	procs  map[string]*proc // by pod name
	stop   context.CancelFunc
	done   chan struct{}
	ending sync.WaitGroup // pods' terminations under way (terminate)
}

// proc is one pod's process.
type proc struct {
	uid    types.UID
	cmd    *exec.Cmd
	dir    string
	ports  map[string]int // container port name -> loopback port
	env    []string       // the container's environment, as started
	exited chan struct{}  // closed when the process ended
	err    error          // its end, once exited is closed
	ending bool           // its pod is being deleted (under Kubelet.mu)
}

// Start runs the kubelet's sync loop until Stop.
func (k *Kubelet) Start(ctx context.Context) {
	ctx, k.stop = context.WithCancel(ctx)
	k.procs = map[string]*proc{}
	k.done = make(chan struct{})
	go func() {
		defer close(k.done)
		t := time.NewTicker(syncEvery)
		defer t.Stop()
		for {
			if err := k.sync(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "standin kubelet: %v\n", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the sync loop and every process it started.
func (k *Kubelet) Stop() {
	k.stop()
	<-k.done
	k.ending.Wait() // their preStop hooks end with the loop's context
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, p := range k.procs {
		p.kill()
		delete(k.procs, name)
	}
}

// Ports returns the loopback ports of a running pod's named container
// ports, and whether the pod runs.
func (k *Kubelet) Ports(pod string) (map[string]int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.procs[pod]
	if !ok {
		return nil, false
	}
	out := make(map[string]int, len(p.ports))
	for n, v := range p.ports {
		out[n] = v
	}
	return out, true
}

// Log returns the end of a pod's process log (its stdout and stderr),
// and whether the stand-in ran the pod.
func (k *Kubelet) Log(pod string) (string, bool) {
	k.mu.Lock()
	p, ok := k.procs[pod]
	k.mu.Unlock()
	if !ok {
		return "", false
	}
	return tail(filepath.Join(p.dir, "log")), true
}

// Running counts the processes running now.
func (k *Kubelet) Running() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, p := range k.procs {
		select {
		case <-p.exited:
		default:
			n++
		}
	}
	return n
}

// ResolveService returns the loopback HOST:PORT that Service name's port
// port reaches: a ready pod it selects (as its Endpoints would list), by
// the port's target name.
func (k *Kubelet) ResolveService(ctx context.Context, name string, port int) (string, error) {
	var svc corev1.Service
	if err := k.Client.Get(ctx, types.NamespacedName{Namespace: k.Namespace, Name: name}, &svc); err != nil {
		return "", fmt.Errorf("service %s: %w", name, err)
	}
	target := ""
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) == port {
			target = sp.TargetPort.String()
			if sp.TargetPort.Type == intstr.Int {
				target = sp.Name
			}
		}
	}
	if target == "" {
		return "", fmt.Errorf("service %s has no port %d", name, port)
	}
	var pods corev1.PodList
	if err := k.Client.List(ctx, &pods, client.InNamespace(k.Namespace), client.MatchingLabels(svc.Spec.Selector)); err != nil {
		return "", fmt.Errorf("service %s: its pods: %w", name, err)
	}
	for _, pod := range pods.Items {
		if ports, ok := k.Ports(pod.Name); ok && ports[target] != 0 && pod.DeletionTimestamp.IsZero() && podReady(&pod) {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[target])), nil
		}
	}
	return "", fmt.Errorf("service %s: %w", name, errNoEndpoint)
}

// errNoEndpoint: a Service selects no running pod yet; a pod whose
// environment names it waits, as its process would retry DNS.
var errNoEndpoint = errors.New("no running pod behind it yet")

// sync starts the pods that have no process, ends those of deleted pods,
// and writes the pods' status.
func (k *Kubelet) sync(ctx context.Context) error {
	var pods corev1.PodList
	if err := k.Client.List(ctx, &pods, client.InNamespace(k.Namespace)); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	seen := map[string]bool{}
	var errs []error
	for i := range pods.Items {
		pod := &pods.Items[i]
		seen[pod.Name] = true
		if err := k.syncPod(ctx, pod); err != nil && !errors.Is(err, errNoEndpoint) {
			errs = append(errs, fmt.Errorf("pod %s: %w", pod.Name, err))
		}
	}
	k.mu.Lock()
	for name, p := range k.procs {
		if !seen[name] { // deleted without the grace period
			p.kill()
			delete(k.procs, name)
		}
	}
	k.mu.Unlock()
	return errors.Join(errs...)
}

// syncPod brings one pod's process and status in line.
func (k *Kubelet) syncPod(ctx context.Context, pod *corev1.Pod) error {
	k.mu.Lock()
	p := k.procs[pod.Name]
	if p != nil && p.uid != pod.UID { // a new pod by an old name
		p.kill()
		delete(k.procs, pod.Name)
		p = nil
	}
	k.mu.Unlock()
	if !pod.DeletionTimestamp.IsZero() {
		if p != nil {
			k.terminate(ctx, pod.DeepCopy(), p)
			return nil
		}
		return k.release(ctx, pod)
	}
	if p == nil {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return nil // ended; RestartPolicy Never
		}
		return k.startPod(ctx, pod)
	}
	return k.updateStatus(ctx, pod, p)
}

// release is the kubelet's part of a graceful delete: the containers have
// ended, so the pod may go now.
func (k *Kubelet) release(ctx context.Context, pod *corev1.Pod) error {
	zero := int64(0)
	err := k.Client.Delete(ctx, pod, &client.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// terminate ends a deleted pod's process as the kubelet does, in the
// background (the sync loop goes on with the other pods): its container's
// preStop exec hook runs, within the pod's termination grace period; then
// the process gets SIGTERM (and SIGKILL 10 s later), and the pod goes.
// The hook's output is appended to the pod's log.
func (k *Kubelet) terminate(ctx context.Context, pod *corev1.Pod, p *proc) {
	k.mu.Lock()
	if p.ending {
		k.mu.Unlock()
		return
	}
	p.ending = true
	k.ending.Add(1)
	k.mu.Unlock()
	go func() {
		defer k.ending.Done()
		k.preStop(ctx, pod, p)
		p.kill()
		k.mu.Lock()
		if k.procs[pod.Name] == p {
			delete(k.procs, pod.Name)
		}
		k.mu.Unlock()
		if err := k.release(ctx, pod); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "standin kubelet: pod %s: %v\n", pod.Name, err)
		}
	}()
}

// preStop runs the pod's preStop exec hook, if it has one and its process
// still runs, for at most the pod's termination grace period.
func (k *Kubelet) preStop(ctx context.Context, pod *corev1.Pod, p *proc) {
	lc := pod.Spec.Containers[0].Lifecycle
	if lc == nil || lc.PreStop == nil || lc.PreStop.Exec == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	grace := 30 * time.Second
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	out, err := k.run(ctx, p, lc.PreStop.Exec.Command)
	f, ferr := os.OpenFile(filepath.Join(p.dir, "log"), os.O_WRONLY|os.O_APPEND, 0)
	if ferr != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "standin: preStop %q: err %v\n%s\n", lc.PreStop.Exec.Command, err, out)
}

// Exec runs a command in a running pod's container, as `kubectl exec`
// does: with the container's environment and its state folder. The
// command's first word must be "rayo", the only program the stood-in
// container has. It returns the command's standard output; its standard
// error is in the error.
func (k *Kubelet) Exec(ctx context.Context, pod string, command ...string) ([]byte, error) {
	k.mu.Lock()
	p, ok := k.procs[pod]
	k.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("exec in pod %s: the stand-in runs no such pod", pod)
	}
	return k.run(ctx, p, command)
}

// run runs command in p's container (see Exec).
func (k *Kubelet) run(ctx context.Context, p *proc, command []string) ([]byte, error) {
	if len(command) == 0 || command[0] != "rayo" {
		return nil, fmt.Errorf("exec %q: the stand-in's containers have only the rayo program", command)
	}
	cmd := exec.CommandContext(ctx, k.Binary, command[1:]...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("exec %q: %w: %s", command, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// startPod binds a pod, starts its process and marks it Running.
func (k *Kubelet) startPod(ctx context.Context, pod *corev1.Pod) error {
	if len(pod.Spec.Containers) != 1 {
		return fmt.Errorf("the stand-in runs pods of one container; this has %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	dir := filepath.Join(k.Dir, pod.Name+"-"+string(pod.UID)[:8])
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return err
	}
	ports := map[string]int{}
	for _, cp := range c.Ports {
		port, err := freePort()
		if err != nil {
			return err
		}
		ports[cp.Name] = port
	}
	mounts, err := k.volumes(ctx, pod, c, dir)
	if err != nil {
		return err
	}
	env, err := k.environment(ctx, pod, c, ports, mounts)
	if err != nil {
		return err // a Service not ready yet: tried again at the next sync
	}
	env = append(env, "RAYO_STATE_DIR="+filepath.Join(dir, "state"), "TMPDIR="+filepath.Join(dir, "state"),
		"PATH="+os.Getenv("PATH"), "HOME="+dir)
	sa, err := k.serviceAccount(ctx, pod, dir)
	if err != nil {
		return err
	}
	env = append(env, sa...)
	if pod.Spec.NodeName == "" {
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target: corev1.ObjectReference{Kind: "Node", Name: NodeName}}
		if err := k.Client.SubResource("binding").Create(ctx, pod, b); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
	}
	// O_APPEND: a preStop hook's output is appended while it runs.
	log, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(k.Binary, append(slicesClone(c.Command[min(len(c.Command), 1):]), c.Args...)...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	// Pdeathsig: a test binary killed at its timeout takes the pods'
	// processes with it rather than leaving clusters running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", k.Binary, err)
	}
	p := &proc{uid: pod.UID, cmd: cmd, dir: dir, ports: ports, env: env, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.exited)
	}()
	k.mu.Lock()
	k.procs[pod.Name] = p
	k.mu.Unlock()
	return k.updateStatus(ctx, pod, p)
}

// slicesClone copies s.
func slicesClone(s []string) []string { return append([]string(nil), s...) }

// volumes writes the pod's Secret volumes that the container mounts and
// returns mount path -> local folder.
func (k *Kubelet) volumes(ctx context.Context, pod *corev1.Pod, c corev1.Container, dir string) (map[string]string, error) {
	out := map[string]string{}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			local := filepath.Join(dir, "volumes", v.Name)
			if err := os.MkdirAll(local, 0o700); err != nil {
				return nil, err
			}
			if v.Secret != nil {
				var s corev1.Secret
				if err := k.Client.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: v.Secret.SecretName}, &s); err != nil {
					return nil, fmt.Errorf("secret volume %s: %w", v.Name, err)
				}
				files := map[string]string{} // key -> file name, as the volume projects them
				for key := range s.Data {
					files[key] = key
				}
				if len(v.Secret.Items) > 0 { // only the keys listed
					files = map[string]string{}
					for _, it := range v.Secret.Items {
						if _, ok := s.Data[it.Key]; !ok {
							return nil, fmt.Errorf("secret volume %s: secret %s has no key %q", v.Name, s.Name, it.Key)
						}
						if it.Path == "" || strings.Contains(it.Path, "/") {
							return nil, fmt.Errorf("secret volume %s: the stand-in projects keys to plain file names, not %q", v.Name, it.Path)
						}
						files[it.Key] = it.Path
					}
				}
				for key, name := range files {
					if err := os.WriteFile(filepath.Join(local, name), s.Data[key], 0o400); err != nil {
						return nil, err
					}
				}
			}
			out[m.MountPath] = local
		}
	}
	return out, nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// hostPort matches a HOST:PORT value whose host may name a Service.
var hostPort = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9.-]+)?:([0-9]+)$`)

// environment is the container's environment as the stand-in runs it.
func (k *Kubelet) environment(ctx context.Context, pod *corev1.Pod, c corev1.Container, ports map[string]int, mounts map[string]string) ([]string, error) {
	vals := map[string]string{}
	var order []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				return nil, fmt.Errorf("env %s: the stand-in reads only fieldRef", e.Name)
			}
			switch e.ValueFrom.FieldRef.FieldPath {
			case "status.podIP", "status.hostIP":
				v = "127.0.0.1"
			case "metadata.name":
				v = pod.Name
			case "metadata.namespace":
				v = pod.Namespace
			default:
				return nil, fmt.Errorf("env %s: fieldRef %s not stood in", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		v = varRef.ReplaceAllStringFunc(v, func(ref string) string {
			if got, ok := vals[ref[2:len(ref)-1]]; ok {
				return got
			}
			return ref
		})
		v = underMount(v, mounts)
		if v == "0.0.0.0" { // all of the pod's interfaces: its loopback here
			v = "127.0.0.1"
		}
		if m := hostPort.FindStringSubmatch(v); m != nil && !strings.Contains(v, "127.0.0.1") {
			port, _ := strconv.Atoi(m[4])
			addr, err := k.ResolveService(ctx, m[1], port)
			if err == nil {
				v = addr
			} else if !apierrors.IsNotFound(errors.Unwrap(err)) {
				return nil, err
			}
		}
		if _, ok := vals[e.Name]; !ok {
			order = append(order, e.Name)
		}
		vals[e.Name] = v
	}
	for name, port := range ports {
		if env, ok := portEnv[name]; ok {
			if _, ok := vals[env]; !ok {
				order = append(order, env)
			}
			vals[env] = strconv.Itoa(port)
		}
	}
	out := make([]string, 0, len(order))
	for _, n := range order {
		out = append(out, n+"="+vals[n])
	}
	return out, nil
}

// underMount rewrites a path under one of the container's mount paths to
// the local folder that stands in for it, once: the longest mount path
// that holds it wins (a value rewritten under /etc/rayo/token must not be
// taken again for one under /tmp, where the local folders live).
func underMount(v string, mounts map[string]string) string {
	best := ""
	for mount := range mounts {
		if strings.HasPrefix(v, mount+"/") && len(mount) > len(best) {
			best = mount
		}
	}
	if best == "" {
		return v
	}
	return mounts[best] + strings.TrimPrefix(v, best)
}

// updateStatus writes the pod's phase and readiness when they change.
func (k *Kubelet) updateStatus(ctx context.Context, pod *corev1.Pod, p *proc) error {
	phase, ready := corev1.PodRunning, false
	select {
	case <-p.exited:
		phase = corev1.PodSucceeded
		if p.err != nil {
			phase = corev1.PodFailed
		}
	default:
		ready = k.probe(ctx, pod.Spec.Containers[0].ReadinessProbe, p.ports)
	}
	if pod.Status.Phase == phase && podReady(pod) == ready {
		return nil
	}
	now := metav1.Now()
	st := pod.Status.DeepCopy()
	st.Phase = phase
	st.PodIP, st.HostIP = "127.0.0.1", "127.0.0.1"
	st.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	st.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
	}
	cs := corev1.ContainerStatus{Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image, Ready: ready}
	if phase == corev1.PodRunning {
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: *st.StartTime}
	} else {
		code := int32(0)
		if ee, ok := p.err.(*exec.ExitError); ok {
			code = int32(ee.ExitCode())
		}
		cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, FinishedAt: now,
			Message: tail(filepath.Join(p.dir, "log"))}
	}
	st.ContainerStatuses = []corev1.ContainerStatus{cs}
	pod.Status = *st
	if err := k.Client.Status().Update(ctx, pod); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// probe runs a readiness probe against the process's ports.
func (k *Kubelet) probe(ctx context.Context, pr *corev1.Probe, ports map[string]int) bool {
	if pr == nil {
		return true
	}
	port := func(p intstr.IntOrString) int {
		if p.Type == intstr.String {
			return ports[p.StrVal]
		}
		return p.IntValue()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	switch {
	case pr.HTTPGet != nil:
		addr := fmt.Sprintf("127.0.0.1:%d", port(pr.HTTPGet.Port))
		if pr.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			ok, err := httpProbe(ctx, probeTLS, "https://"+addr+pr.HTTPGet.Path)
			var rec tls.RecordHeaderError
			if !errors.Is(err, http.ErrSchemeMismatch) && !errors.As(err, &rec) {
				return ok
			}
			// The server answered in plain HTTP: rayo's API server does
			// on loopback, where every stood-in pod lives (a real pod's
			// IP is beyond loopback, where it serves HTTPS).
		}
		ok, _ := httpProbe(ctx, http.DefaultClient, "http://"+addr+pr.HTTPGet.Path)
		return ok
	case pr.TCPSocket != nil:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port(pr.TCPSocket.Port)))
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	return false
}

// probeTLS is the client of HTTPS probes: as the kubelet's, it does not
// check the server's certificate.
var probeTLS = &http.Client{Transport: &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet's probes
	DisableKeepAlives: true,
}}

// httpProbe GETs u: success is a 2xx or 3xx answer.
func httpProbe(ctx context.Context, hc *http.Client, u string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400, nil
}

// podReady reports whether the pod's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kill ends the process: SIGTERM to its process group (rayo stops its
// workers), then SIGKILL if it has not ended within 10 s.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.exited
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL) // any worker left behind
}

// freePort returns a loopback port free now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of a log file.
func tail(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}
