// Package hostres reads what this node may use: its memory total and use,
// and its CPU count, honouring the limits of the process's control group
// (cgroup v1 or v2) as well as the machine's RAM and the CPU affinity mask.
//
// A Host reads below a root folder, so tests point it at fixture trees laid
// out as /proc and /sys/fs/cgroup are; Real reads the machine's own.
//
// The package is Linux only.
package hostres

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sources of a memory total, as Memory.Source names them.
const (
	SourceCgroupV1 = "cgroup v1 memory.limit_in_bytes"
	SourceCgroupV2 = "cgroup v2 memory.max"
	SourceRAM      = "RAM (/proc/meminfo MemTotal)"
)

// noLimit is the smallest figure a cgroup v1 limit file holds when there is
// no limit (the kernel writes 9223372036854771712, a page-rounded
// math.MaxInt64).
const noLimit = int64(1) << 62

// Memory is the node's memory as this process sees it, in bytes.
type Memory struct {
	// Total is what the node may use: the cgroup's limit, or the RAM when
	// there is none or it is larger.
	Total int64
	// Used is what is in use against Total: the cgroup's charge less its
	// inactive file pages when a cgroup limit sets Total, else the
	// machine's MemTotal less MemAvailable.
	Used int64
	// RAM is the machine's MemTotal.
	RAM int64
	// Limit is the cgroup's memory limit, 0 when none.
	Limit int64
	// Source says where Total comes from (one of the Source constants).
	Source string
}

// Fraction is Used over Total.
func (m Memory) Fraction() float64 {
	if m.Total <= 0 {
		return 0
	}
	return float64(m.Used) / float64(m.Total)
}

// Host reads a node's resources from files below Root ("" or "/": the
// machine's own).
type Host struct {
	Root string
}

// Real is the machine this process runs on.
var Real = Host{}

// ReadMemory reads the node's memory from the real machine.
func ReadMemory() (Memory, error) { return Real.Memory() }

// CPUs is the real machine's CPU count for this process: the smaller of
// the CPUs its affinity mask allows and its cgroup's CPU quota, rounded up,
// at least 1.
func CPUs() int {
	n := 0
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil {
		n = set.Count()
	}
	return Real.CPUs(n)
}

func (h Host) path(p string) string {
	if h.Root == "" {
		return p
	}
	return filepath.Join(h.Root, p)
}

// cgroupDirs are the folders of this process's cgroup for one controller,
// its own first, then each ancestor up to the controller's mount point.
// v2 is true for the unified hierarchy.
type cgroupDirs struct {
	dirs []string
	v2   bool
}

// mount is one cgroup mount of /proc/self/mountinfo.
type mount struct {
	root, point string
	v2          bool
	controllers []string // super options naming the v1 controllers
}

func (h Host) mounts() ([]mount, error) {
	b, err := os.ReadFile(h.path("/proc/self/mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("hostres: %w", err)
	}
	var out []mount
	for _, line := range strings.Split(string(b), "\n") {
		// id parent maj:min root point options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		m := mount{root: f[3], point: f[4]}
		switch g[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			if len(g) >= 3 {
				m.controllers = strings.Split(g[2], ",")
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// cgroups maps each v1 controller (and "" for v2) to this process's
// cgroup path in /proc/self/cgroup.
func (h Host) cgroups() (map[string]string, error) {
	b, err := os.ReadFile(h.path("/proc/self/cgroup"))
	if err != nil {
		return nil, fmt.Errorf("hostres: %w", err)
	}
	out := make(map[string]string)
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, nil
}

// dirsFor finds the folders of this process's cgroup for a controller:
// the v1 hierarchy that has it, else the unified (v2) one.
func (h Host) dirsFor(controller string) (cgroupDirs, bool) {
	mounts, err := h.mounts()
	if err != nil {
		return cgroupDirs{}, false
	}
	groups, err := h.cgroups()
	if err != nil {
		return cgroupDirs{}, false
	}
	var chosen *mount
	var cgPath string
	for i := range mounts {
		m := &mounts[i]
		for _, c := range m.controllers {
			if p, ok := groups[controller]; c == controller && ok {
				chosen, cgPath = m, p
			}
		}
	}
	if chosen == nil {
		for i := range mounts {
			if p, ok := groups[""]; mounts[i].v2 && ok {
				chosen, cgPath = &mounts[i], p
				break
			}
		}
	}
	if chosen == nil {
		return cgroupDirs{}, false
	}
	// The cgroup path is relative to the hierarchy's root; the mount may
	// show a part of it only (a container's own cgroup).
	rel := cgPath
	if chosen.root != "/" {
		rel = strings.TrimPrefix(cgPath, chosen.root)
	}
	top := h.path(chosen.point)
	dir := filepath.Join(top, rel)
	if _, err := os.Stat(dir); err != nil {
		dir = top // a cgroup namespace we cannot see through: the mount's own
	}
	d := cgroupDirs{v2: chosen.v2}
	for {
		d.dirs = append(d.dirs, dir)
		if dir == top || len(dir) <= len(top) {
			break
		}
		dir = filepath.Dir(dir)
	}
	return d, true
}

// readInt reads a file holding one integer; "max" reads as -1.
func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("hostres: %s: %w", path, err)
	}
	return v, nil
}

// statKey reads one key of a memory.stat file.
func statKey(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("hostres: %s %s: %w", path, key, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("hostres: %s: no %s", path, key)
}

// meminfo reads MemTotal and MemAvailable in bytes.
func (h Host) meminfo() (total, avail int64, err error) {
	b, err := os.ReadFile(h.path("/proc/meminfo"))
	if err != nil {
		return 0, 0, fmt.Errorf("hostres: %w", err)
	}
	total, avail = -1, -1
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		if len(f) == 3 && f[2] == "kB" {
			v *= 1024
		}
		switch f[0] {
		case "MemTotal:":
			total = v
		case "MemAvailable:":
			avail = v
		}
	}
	if total <= 0 || avail < 0 {
		return 0, 0, errors.New("hostres: /proc/meminfo lacks MemTotal or MemAvailable")
	}
	return total, avail, nil
}

// Memory reads the node's memory: the cgroup's limit and use when it has
// a limit below the RAM, else the machine's.
func (h Host) Memory() (Memory, error) {
	ram, avail, err := h.meminfo()
	if err != nil {
		return Memory{}, err
	}
	m := Memory{Total: ram, Used: ram - avail, RAM: ram, Source: SourceRAM}
	d, ok := h.dirsFor("memory")
	if !ok {
		return m, nil
	}
	limitFile, usageFile, inactiveKey, source := "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file", SourceCgroupV1
	if d.v2 {
		limitFile, usageFile, inactiveKey, source = "memory.max", "memory.current", "inactive_file", SourceCgroupV2
	}
	// The tightest limit of the cgroup and its ancestors binds.
	limit := int64(-1)
	for _, dir := range d.dirs {
		v, err := readInt(filepath.Join(dir, limitFile))
		if errors.Is(err, os.ErrNotExist) {
			continue // the hierarchy's root has no limit file
		}
		if err != nil {
			return m, fmt.Errorf("hostres: cgroup memory limit: %w", err)
		}
		if v < 0 || v >= noLimit {
			continue // "max", or no limit
		}
		if limit < 0 || v < limit {
			limit = v
		}
	}
	if limit < 0 {
		return m, nil
	}
	m.Limit = limit
	if limit >= ram {
		return m, nil
	}
	m.Total, m.Source = limit, source
	usage, err := readInt(filepath.Join(d.dirs[0], usageFile))
	if err != nil {
		return m, fmt.Errorf("hostres: cgroup memory use: %w", err)
	}
	inactive, err := statKey(filepath.Join(d.dirs[0], "memory.stat"), inactiveKey)
	if err != nil {
		inactive = 0 // use counts page cache then: an overestimate, on the safe side
	}
	m.Used = usage - inactive
	if m.Used < 0 {
		m.Used = 0
	}
	return m, nil
}

// CPUQuota is the cgroup's CPU quota in CPUs (quota over period), and
// false when there is none.
func (h Host) CPUQuota() (float64, bool) {
	d, ok := h.dirsFor("cpu")
	if !ok {
		return 0, false
	}
	best := math.Inf(1)
	for _, dir := range d.dirs {
		var quota, period int64
		if d.v2 {
			b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
			if err != nil {
				continue
			}
			f := strings.Fields(string(b))
			if len(f) != 2 || f[0] == "max" {
				continue
			}
			q, err1 := strconv.ParseInt(f[0], 10, 64)
			p, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			quota, period = q, p
		} else {
			q, err1 := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
			p, err2 := readInt(filepath.Join(dir, "cpu.cfs_period_us"))
			if err1 != nil || err2 != nil {
				continue
			}
			quota, period = q, p
		}
		if quota <= 0 || period <= 0 {
			continue
		}
		if c := float64(quota) / float64(period); c < best {
			best = c
		}
	}
	if math.IsInf(best, 1) {
		return 0, false
	}
	return best, true
}

// CPUs is the CPU count of this host for a process whose affinity mask
// allows affinity CPUs (0: unknown): the smaller of those and the cgroup's
// quota, rounded up, at least 1.
func (h Host) CPUs(affinity int) int {
	n := affinity
	if q, ok := h.CPUQuota(); ok {
		if c := int(math.Ceil(q - 1e-9)); n <= 0 || c < n {
			n = c
		}
	}
	if n < 1 {
		n = 1
	}
	return n
}
