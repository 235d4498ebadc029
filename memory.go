package rayo

import (
	"fmt"
	"math"
)

// memoryResource is the name of the schedulable memory resource, in
// bytes: the raylet's (raylet.MemoryResource), as "CPU" and "GPU" are.
const memoryResource = "memory"

// Memory declares memory, in bytes, as a schedulable resource named
// "memory", as Ray's memory= does. For a task or an actor it is what it
// needs: it runs on a node with that much memory not yet declared by the
// tasks and actors running there (it is a reservation for scheduling; the
// process is not limited to it). For Init it is what the local node
// offers (default: its memory total, the cgroup's limit honoured). Nodes
// started with rayo start offer their memory total, or what
// --resources '{"memory": N}' says.
func Memory(bytes int64) Option {
	return option("Memory", forInit|forTask|forActor, func(o *options) {
		if bytes <= 0 {
			o.fail(fmt.Errorf("rayo: Memory(%d): want a positive number of bytes", bytes))
			return
		}
		o.nodeMemory, o.taskMemory = float64(bytes), float64(bytes)
	})
}

// MemoryUsageThreshold, for Init, is the fraction of the node's memory
// (cgroup-aware) past which its memory monitor kills a worker: the one
// running the newest retriable task of the owner with the most running
// tasks (actors' workers only when there is no other; drivers and the
// raylet never). The task is retried with backoff, counting against its
// MaxRetries, and fails with ErrOutOfMemory past them. Default 0.95, or
// the RAYO_MEMORY_USAGE_THRESHOLD environment variable; 1 kills only when
// memory is all used.
func MemoryUsageThreshold(fraction float64) Option {
	return option("MemoryUsageThreshold", forInit, func(o *options) {
		if math.IsNaN(fraction) || fraction <= 0 || fraction > 1 {
			o.fail(fmt.Errorf("rayo: MemoryUsageThreshold(%g): want a fraction above 0, at most 1", fraction))
			return
		}
		o.memThreshold = fraction
	})
}
