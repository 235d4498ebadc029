package worker

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// EnvCUDAVisibleDevices lists the GPUs a CUDA program may use; a worker
// sets it to those of the task (or actor) it runs.
const EnvCUDAVisibleDevices = "CUDA_VISIBLE_DEVICES"

// gpus are the GPUs of what this worker runs, and the process's own
// CUDA_VISIBLE_DEVICES from before, put back for tasks without GPUs.
var gpus struct {
	sync.Mutex
	ids     []int
	set     bool // the environment was set for ids
	orig    string
	hadOrig bool
}

// setGPUs makes the GPUs of the lease a task runs on this process's: in
// CUDA_VISIBLE_DEVICES (read by CUDA when it starts) and in GPUIDs.
func setGPUs(list []int32) {
	gpus.Lock()
	defer gpus.Unlock()
	ids := make([]int, len(list))
	for i, g := range list {
		ids[i] = int(g)
	}
	if gpus.set && slices.Equal(ids, gpus.ids) {
		return // the task before had the same: most tasks
	}
	if !gpus.set {
		gpus.orig, gpus.hadOrig = os.LookupEnv(EnvCUDAVisibleDevices)
	}
	gpus.ids, gpus.set = ids, true
	switch {
	case len(ids) > 0:
		s := make([]string, len(ids))
		for i, g := range ids {
			s[i] = strconv.Itoa(g)
		}
		_ = os.Setenv(EnvCUDAVisibleDevices, strings.Join(s, ","))
	case gpus.hadOrig:
		_ = os.Setenv(EnvCUDAVisibleDevices, gpus.orig)
	default:
		_ = os.Unsetenv(EnvCUDAVisibleDevices)
	}
}

// GPUIDs are the GPUs of the task or actor this worker runs (their
// indexes on its node), or nil.
func GPUIDs() []int {
	gpus.Lock()
	defer gpus.Unlock()
	if len(gpus.ids) == 0 {
		return nil
	}
	return slices.Clone(gpus.ids)
}
