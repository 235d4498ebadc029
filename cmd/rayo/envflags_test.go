package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/rayo-dev/rayo/internal/hostres"
)

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"num-cpus":                  "RAYO_NUM_CPUS",
		"head":                      "RAYO_HEAD",
		"object-spilling-threshold": "RAYO_OBJECT_SPILLING_THRESHOLD",
		"token":                     "RAYO_TOKEN",
	} {
		if got := envName(flag); got != want {
			t.Errorf("envName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string // cpus, head and host after the environment
		fromEnv string // the flags set from it, sorted
		err     string
	}{
		{"nothing set", nil, nil, "1 false 127.0.0.1", "", ""},
		{"twins set flags", nil, map[string]string{"RAYO_NUM_CPUS": "3", "RAYO_HEAD": "true", "RAYO_HOST": "0.0.0.0"},
			"3 true 0.0.0.0", "head host num-cpus", ""},
		{"the command line wins", []string{"--num-cpus", "2"}, map[string]string{"RAYO_NUM_CPUS": "3"}, "2 false 127.0.0.1", "", ""},
		{"empty counts as unset", nil, map[string]string{"RAYO_HOST": ""}, "1 false 127.0.0.1", "", ""},
		{"other variables are left alone", nil, map[string]string{"RAYO_HELP": "true", "NUM_CPUS": "9"}, "1 false 127.0.0.1", "", ""},
		{"a bad value names its variable", nil, map[string]string{"RAYO_NUM_CPUS": "many"}, "", "", `RAYO_NUM_CPUS="many" (the twin of --num-cpus)`},
		{"a bad bool names its variable", nil, map[string]string{"RAYO_HEAD": "sure"}, "", "", `RAYO_HEAD="sure" (the twin of --head)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("start", pflag.ContinueOnError)
			cpus := fs.Float64("num-cpus", 1, "")
			head := fs.Bool("head", false, "")
			host := fs.String("host", "127.0.0.1", "")
			fs.Bool("help", false, "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			set, err := applyEnv(fs, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%g %v %s", *cpus, *head, *host); got != tc.want {
				t.Errorf("flags %q, want %q", got, tc.want)
			}
			var names []string
			fs.VisitAll(func(f *pflag.Flag) {
				if set[f.Name] {
					names = append(names, f.Name)
				}
			})
			if got := strings.Join(names, " "); got != tc.fromEnv {
				t.Errorf("set from the environment: %q, want %q", got, tc.fromEnv)
			}
		})
	}
}

// TestStartHelpStatesTheEnvRule: the rule is written where operators look.
func TestStartHelpStatesTheEnvRule(t *testing.T) {
	out, _, err := run(t, "start", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RAYO_NUM_CPUS", "command line wins", "--raylet-port", "--metrics-port"} {
		if !strings.Contains(out, want) {
			t.Errorf("start --help does not say %q:\n%s", want, out)
		}
	}
}

// TestStartCPUDefaultIsTheCgroups: --num-cpus defaults to what hostres
// reads (the affinity mask and the cgroup's CPU quota).
func TestStartCPUDefaultIsTheCgroups(t *testing.T) {
	f := newStartCmd().Flags().Lookup("num-cpus")
	if want := strconv.Itoa(hostres.CPUs()); f.DefValue != want {
		t.Errorf("--num-cpus defaults to %s, hostres.CPUs() is %s", f.DefValue, want)
	}
}

// TestStartFromEnvWithFixedPorts starts real daemons configured by their
// environment: a head whose CPUs, raylet port and token file come from
// twins, whose --metrics-port flag wins over its twin and which ignores
// RAYO_ADDRESS, and a node that joins by RAYO_ADDRESS alone, with the
// token read from --token-file; each listens on the ports it was given.
func TestStartFromEnvWithFixedPorts(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-a-mounted-secret-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, rayletPort, metricsPort, loserPort := freePort(t), freePort(t), freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	e.daemonEnv(t, []string{
		"RAYO_NUM_CPUS=3", "RAYO_DASHBOARD_PORT=0", "RAYO_ADDRESS=127.0.0.1:1", "RAYO_TOKEN_FILE=" + tokenFile,
		"RAYO_RAYLET_PORT=" + strconv.Itoa(rayletPort), "RAYO_METRICS_PORT=" + strconv.Itoa(loserPort),
	}, "start", "--head", "--port", strconv.Itoa(port), "--metrics-port", strconv.Itoa(metricsPort))
	e.waitFor(t, 20*time.Second, "head up", func(st status) bool { return count(st, "ALIVE") == 1 })

	workerRaylet, workerMetrics := freePort(t), freePort(t)
	e.daemonEnv(t, []string{
		"RAYO_ADDRESS=" + addr, "RAYO_NUM_CPUS=1",
		"RAYO_RAYLET_PORT=" + strconv.Itoa(workerRaylet), "RAYO_METRICS_PORT=" + strconv.Itoa(workerMetrics),
	}, "start", "--token-file", tokenFile)
	e.waitFor(t, 20*time.Second, "node joined", func(st status) bool { return count(st, "ALIVE") == 2 })

	// The cluster's token is the file's.
	st, err := e.status("--address", addr, "--token", "from-a-mounted-secret-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, n := range st.Nodes {
		got[n.Address] = n.Resources["CPU"]
	}
	want := map[string]float64{
		fmt.Sprintf("127.0.0.1:%d", rayletPort):   3,
		fmt.Sprintf("127.0.0.1:%d", workerRaylet): 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("nodes (raylet address: CPUs) %v, want %v", got, want)
	}
	for _, p := range []int{metricsPort, workerMetrics} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p))
		if err != nil {
			t.Fatalf("metrics on the fixed port %d: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("rayo_object_store_capacity_bytes")) {
			t.Fatalf("metrics on the fixed port %d: %s\n%.300s", p, resp.Status, body)
		}
	}
}

// TestStartBadPortsAndTwins: a port out of range, a port taken and a twin
// the flag refuses each stop `rayo start` with an error naming them.
func TestStartBadPortsAndTwins(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"raylet port out of range", nil, []string{"--raylet-port", "70000"}, "RayletPort 70000: want a TCP port"},
		{"metrics port out of range", []string{"RAYO_METRICS_PORT=-2"}, nil, "MetricsPort -2: want a TCP port"},
		{"raylet port taken", nil, []string{"--raylet-port", takenPort}, "address already in use"},
		{"metrics port taken", nil, []string{"--metrics-port", takenPort}, "address already in use"},
		{"a twin the flag refuses", []string{"RAYO_NUM_CPUS=many"}, nil, `RAYO_NUM_CPUS="many" (the twin of --num-cpus)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"start", "--head", "--port", strconv.Itoa(freePort(t)), "--dashboard-port", "0", "--block"}, tc.args...)
			c := e.cmd(args...)
			c.Env = append(c.Env, tc.env...)
			out, err := c.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("want a failing exit, got %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("the error does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestStartHeadAndAddressTwinsConflict: RAYO_HEAD and RAYO_ADDRESS both
// set is refused, naming the twins; --head given ignores RAYO_ADDRESS
// (see TestStartFromEnvWithFixedPorts).
func TestStartHeadAndAddressTwinsConflict(t *testing.T) {
	e := clusterEnv{bin: buildRayo(t), state: t.TempDir()}
	c := e.cmd("start", "--block")
	c.Env = append(c.Env, "RAYO_HEAD=true", "RAYO_ADDRESS=127.0.0.1:1")
	out, err := c.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "RAYO_HEAD and RAYO_ADDRESS") {
		t.Fatalf("RAYO_HEAD with RAYO_ADDRESS: %v\n%s", err, out)
	}
}

// daemonEnv runs `rayo start ... --block` with env added to the test's
// environment, under the test's control.
func (e clusterEnv) daemonEnv(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	c := e.cmd(append(args, "--block")...)
	c.Env = append(c.Env, env...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Process.Kill()
		_ = c.Wait()
		if t.Failed() {
			t.Logf("daemon %v %v said:\n%s", env, args, out.String())
		}
	})
	return c
}

// TestDeployFilesUseRealTwins: every RAYO_ variable that the Containerfile
// and the Helm chart give the daemon is the twin of a `rayo start` flag,
// so that renaming a flag cannot silently unconfigure them.
func TestDeployFilesUseRealTwins(t *testing.T) {
	twins := map[string]bool{}
	newStartCmd().Flags().VisitAll(func(f *pflag.Flag) { twins[envName(f.Name)] = true })
	re := regexp.MustCompile(`RAYO_[A-Z0-9_]+`)
	for _, file := range []string{"../../deploy/Containerfile", "../../deploy/helm/rayo/templates/_helpers.tpl",
		"../../deploy/operator/controllers/pod.go"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := re.FindAllString(string(b), -1)
		if len(found) < 5 {
			t.Fatalf("%s: only %v: the test no longer reads what it should", file, found)
		}
		for _, v := range found {
			if !twins[v] {
				t.Errorf("%s sets %s, which is the twin of no rayo start flag", file, v)
			}
		}
	}
}
