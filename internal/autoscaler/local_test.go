package autoscaler

import (
	"errors"
	"strings"
	"testing"
)

func TestLocalProviderRefusesBadConfigs(t *testing.T) {
	types := []NodeType{{Name: "w", Resources: map[string]float64{"CPU": 1}, MaxWorkers: 1}}
	root := t.TempDir()
	for name, c := range map[string]struct {
		cfg  LocalConfig
		want string
	}{
		"no exe":     {LocalConfig{Address: "h:1", StateRoot: root, Types: types}, "executable"},
		"no address": {LocalConfig{Exe: "rayo", StateRoot: root, Types: types}, "address"},
		"no state":   {LocalConfig{Exe: "rayo", Address: "h:1", Types: types}, "state"},
		"no types":   {LocalConfig{Exe: "rayo", Address: "h:1", StateRoot: root}, "no node types"},
		"long paths": {LocalConfig{Exe: "rayo", Address: "h:1", StateRoot: root + "/" + strings.Repeat("x", 80), Types: types}, "socket paths"},
	} {
		_, err := NewLocalProvider(c.cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: NewLocalProvider = %v, want ErrConfig mentioning %q", name, err, c.want)
		}
	}
}

func TestLocalArgsAndEnv(t *testing.T) {
	args, err := localArgs(LocalConfig{Address: "10.0.0.1:6379", Host: "10.0.0.2", Args: []string{"--tls=false"}},
		NodeType{Name: "gpu", Resources: map[string]float64{"CPU": 4, "GPU": 1, "special": 2}}, "gpu-3")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(args, " ")
	want := `start --address 10.0.0.1:6379 --block --num-cpus 4 --num-gpus 1 --labels rayo.io/instance=gpu-3,rayo.io/node-type=gpu --resources {"special":2} --host 10.0.0.2 --tls=false`
	if got != want {
		t.Fatalf("args:\n got %s\nwant %s", got, want)
	}
	env := localEnv([]string{"PATH=/bin", "RAYO_HEAD=true", "RAYO_TOKEN=secret", "HOME=/root"})
	if strings.Join(env, " ") != "PATH=/bin HOME=/root" {
		t.Fatalf("env %v: the head's RAYO_ twins must not reach its nodes", env)
	}
}
