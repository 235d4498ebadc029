// Package spill is the storage engine behind object spilling: it writes
// objects from a node's shared-memory store to files in a local folder, reads
// them back, and reclaims their disk space when they are deleted. It knows
// nothing of the raylet; the raylet decides what to spill and when.
//
// # Use
//
//	s, err := spill.Open(spill.Config{Dir: dir})
//	err = s.Spill(ctx, []spill.Object{{ID: id, Data: bytes}}) // bytes may be freed after it returns
//	n, err := s.ReadAt(id, buf, 0)                          // restore, or stream a pull chunk by chunk
//	err = s.Delete(id)                                      // disk bytes reclaimed at once
//	err = s.Close()                                         // every file it made is removed
//
// A Store is safe for concurrent use. Spill returns once every byte is
// written to the file system (not necessarily fsynced: spilled objects are
// lost with their node, as they are lost from memory). The objects of one
// Spill call appear together when it succeeds, or not at all: a failed or
// cancelled call leaves nothing behind.
//
// # Files
//
// Objects of at least Config.FileSize bytes get a file of their own. Smaller
// ones are fused: they are appended to the current fused file until it would
// pass FileSize, then a new one is started, across Spill calls. Each object
// starts at a multiple of the file system's block size, so that Delete can
// give back exactly its blocks with fallocate(PUNCH_HOLE|KEEP_SIZE); a file is
// unlinked when its last object goes. The Writers background writers work
// on different files in parallel (a file's writes are serialized by the
// kernel anyway), with pwritev straight from the callers' slices: no copy.
//
// Files are named rayo-spill-<pid>-<seq> and created in the folder with
// O_EXCL|O_NOFOLLOW, mode 0600. The folder is created 0700 when missing, and
// refused when it is a symlink, is not a directory, is owned by another user,
// or is writable by group or others. An open Store holds an exclusive flock
// on the folder, so two engines never share one; Open removes the files a
// previous engine left behind (rayo-spill-*), since with the lock held none
// can be in use.
//
// # Errors
//
// Failures wrap the sentinels of errors.go, so callers test them with
// errors.Is: ErrDiskFull (a *DiskFullError gives the folder and its usage),
// ErrNotFound, ErrExists, ErrOutOfRange, ErrCorrupt (a spill file is shorter than its
// objects: someone truncated it), ErrUnsafeDir, ErrInUse, ErrConfig and
// ErrClosed. Nothing in the package panics on bad input or on a damaged
// folder. Spill files removed by someone else stay readable while the Store
// is open, since it keeps each file open; the disk space then returns when
// their objects are deleted.
//
// The package is Linux only.
package spill
