package hostres

import (
	"os"
	"path/filepath"
	"testing"
)

const gib = int64(1) << 30

// fixture writes files (path -> content) below a new root folder.
func fixture(t *testing.T, files map[string]string) Host {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Host{Root: root}
}

// 16 GiB of RAM, 12 GiB available.
const meminfo = "MemTotal:       16777216 kB\nMemFree:        1000 kB\nMemAvailable:   12582912 kB\n"

const v1Mounts = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const v1Cgroup = "4:memory:/box/app\n2:cpu,cpuacct:/box/app\n0::/\n"

const v2Mounts = "30 22 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"

const v2Cgroup = "0::/user.slice/app\n"

// memoryCase is a host's files and the memory figures read from them.
type memoryCase struct {
	name   string
	files  map[string]string
	want   Memory
	errors bool
}

// memoryCases lists the hosts TestMemory reads.
var memoryCases = []memoryCase{
	{
		name:  "no cgroup files: the RAM",
		files: map[string]string{"/proc/meminfo": meminfo},
		want:  Memory{Total: 16 * gib, Used: 4 * gib, RAM: 16 * gib, Source: SourceRAM},
	},
	{
		name: "v1 limit",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/memory/box/app/memory.limit_in_bytes": "2147483648\n",
			"/sys/fs/cgroup/memory/box/app/memory.usage_in_bytes": "1073741824\n",
			"/sys/fs/cgroup/memory/box/app/memory.stat":           "cache 5\ninactive_file 7\ntotal_inactive_file 268435456\n",
		},
		want: Memory{Total: 2 * gib, Used: gib - gib/4, RAM: 16 * gib, Limit: 2 * gib, Source: SourceCgroupV1},
	},
	{
		name: "v1 no limit (the kernel's huge figure)",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/memory/box/app/memory.limit_in_bytes": "9223372036854771712\n",
			"/sys/fs/cgroup/memory/box/app/memory.usage_in_bytes": "1073741824\n",
		},
		want: Memory{Total: 16 * gib, Used: 4 * gib, RAM: 16 * gib, Source: SourceRAM},
	},
	{
		name: "v1 an ancestor's limit binds",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/memory/box/memory.limit_in_bytes":     "1073741824\n",
			"/sys/fs/cgroup/memory/box/app/memory.limit_in_bytes": "9223372036854771712\n",
			"/sys/fs/cgroup/memory/box/app/memory.usage_in_bytes": "536870912\n",
		},
		// No memory.stat: use counts the page cache too.
		want: Memory{Total: gib, Used: gib / 2, RAM: 16 * gib, Limit: gib, Source: SourceCgroupV1},
	},
	{
		name: "v1 limit above the RAM",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/memory/box/app/memory.limit_in_bytes": "34359738368\n",
		},
		want: Memory{Total: 16 * gib, Used: 4 * gib, RAM: 16 * gib, Limit: 32 * gib, Source: SourceRAM},
	},
	{
		name: "v1 mount of the container's own cgroup (root not /)",
		files: map[string]string{
			"/proc/meminfo":        meminfo,
			"/proc/self/mountinfo": "34 30 0:31 /box /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
			"/proc/self/cgroup":    "4:memory:/box/app\n",
			"/sys/fs/cgroup/memory/app/memory.limit_in_bytes": "3221225472\n",
			"/sys/fs/cgroup/memory/app/memory.usage_in_bytes": "1073741824\n",
			"/sys/fs/cgroup/memory/app/memory.stat":           "total_inactive_file 0\n",
		},
		want: Memory{Total: 3 * gib, Used: gib, RAM: 16 * gib, Limit: 3 * gib, Source: SourceCgroupV1},
	},
	{
		name: "v2 limit",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/app/memory.max":     "4294967296\n",
			"/sys/fs/cgroup/user.slice/app/memory.current": "2147483648\n",
			"/sys/fs/cgroup/user.slice/app/memory.stat":    "anon 1\nactive_file 9\ninactive_file 1073741824\n",
		},
		want: Memory{Total: 4 * gib, Used: gib, RAM: 16 * gib, Limit: 4 * gib, Source: SourceCgroupV2},
	},
	{
		name: "v2 max",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/app/memory.max":     "max\n",
			"/sys/fs/cgroup/user.slice/app/memory.current": "2147483648\n",
		},
		want: Memory{Total: 16 * gib, Used: 4 * gib, RAM: 16 * gib, Source: SourceRAM},
	},
	{
		name: "v2 cgroup folder missing (a namespace): the mount's own files",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": "0::/elsewhere\n",
			"/sys/fs/cgroup/memory.max":     "1073741824\n",
			"/sys/fs/cgroup/memory.current": "104857600\n",
			"/sys/fs/cgroup/memory.stat":    "inactive_file 0\n",
		},
		want: Memory{Total: gib, Used: 100 << 20, RAM: 16 * gib, Limit: gib, Source: SourceCgroupV2},
	},
	{
		name: "v2 limit without a usage file",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/app/memory.max": "1073741824\n",
		},
		errors: true,
	},
	{
		name:   "no /proc/meminfo",
		files:  map[string]string{"/proc/self/cgroup": v2Cgroup},
		errors: true,
	},
	{
		name: "v1 garbage limit",
		files: map[string]string{
			"/proc/meminfo": meminfo, "/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/memory/box/app/memory.limit_in_bytes": "lots\n",
		},
		errors: true,
	},
}

func TestMemory(t *testing.T) {
	for _, tc := range memoryCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fixture(t, tc.files).Memory()
			if tc.errors {
				if err == nil {
					t.Fatalf("Memory() = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Memory() = %+v\nwant       %+v", got, tc.want)
			}
		})
	}
}

func TestCPUs(t *testing.T) {
	cases := []struct {
		name     string
		files    map[string]string
		affinity int
		want     int
	}{
		{"no cgroup: the affinity mask", nil, 6, 6},
		{"nothing known: one", nil, 0, 1},
		{"v1 no quota", map[string]string{
			"/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/cpu,cpuacct/box/app/cpu.cfs_quota_us":  "-1\n",
			"/sys/fs/cgroup/cpu,cpuacct/box/app/cpu.cfs_period_us": "100000\n",
		}, 8, 8},
		{"v1 quota 2.5 CPUs rounds up", map[string]string{
			"/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/cpu,cpuacct/box/app/cpu.cfs_quota_us":  "250000\n",
			"/sys/fs/cgroup/cpu,cpuacct/box/app/cpu.cfs_period_us": "100000\n",
		}, 8, 3},
		{"v1 quota above the mask", map[string]string{
			"/proc/self/mountinfo": v1Mounts, "/proc/self/cgroup": v1Cgroup,
			"/sys/fs/cgroup/cpu,cpuacct/box/app/cpu.cfs_quota_us":  "1600000\n",
			"/sys/fs/cgroup/cpu,cpuacct/box/app/cpu.cfs_period_us": "100000\n",
		}, 4, 4},
		{"v2 quota", map[string]string{
			"/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/app/cpu.max": "200000 100000\n",
		}, 16, 2},
		{"v2 parent's quota binds", map[string]string{
			"/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/cpu.max":     "50000 100000\n",
			"/sys/fs/cgroup/user.slice/app/cpu.max": "max 100000\n",
		}, 16, 1},
		{"v2 max", map[string]string{
			"/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/app/cpu.max": "max 100000\n",
		}, 16, 16},
		{"v2 malformed cpu.max is skipped", map[string]string{
			"/proc/self/mountinfo": v2Mounts, "/proc/self/cgroup": v2Cgroup,
			"/sys/fs/cgroup/user.slice/app/cpu.max": "half\n",
		}, 3, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fixture(t, tc.files).CPUs(tc.affinity); got != tc.want {
				t.Fatalf("CPUs(%d) = %d, want %d", tc.affinity, got, tc.want)
			}
		})
	}
}

// TestRealMachine checks the figures of the machine the test runs on are
// sane.
func TestRealMachine(t *testing.T) {
	m, err := ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	if m.RAM <= 0 || m.Total <= 0 || m.Total > m.RAM || m.Used <= 0 || m.Used > m.Total {
		t.Fatalf("ReadMemory() = %+v", m)
	}
	if f := m.Fraction(); f <= 0 || f > 1 {
		t.Fatalf("Fraction() = %g", f)
	}
	n := CPUs()
	if n < 1 {
		t.Fatalf("CPUs() = %d", n)
	}
	t.Logf("memory %d MiB used of %d MiB (%s, RAM %d MiB); %d CPUs", m.Used>>20, m.Total>>20, m.Source, m.RAM>>20, n)
}
