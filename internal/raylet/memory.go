package raylet

// StoreSizing is the object store's capacity and where the figure comes
// from (a flag or option, the cgroup's memory limit, the RAM, /dev/shm).
func (r *Raylet) StoreSizing() (int64, string) { return r.cfg.StoreCapacity, r.cfg.StoreSource }
