package spill

import (
	"errors"
	"fmt"
)

// Errors returned by the Store, wrapped with detail; test with errors.Is.
var (
	// ErrDiskFull means the file system holding the spill folder would pass
	// Config.Threshold. The error is a *DiskFullError.
	ErrDiskFull = errors.New("spill: disk full")
	// ErrNotFound means no spilled object has that ID.
	ErrNotFound = errors.New("spill: object not spilled")
	// ErrExists means the object is already spilled, or is given twice.
	ErrExists = errors.New("spill: object already spilled")
	// ErrOutOfRange means a read starts outside the object.
	ErrOutOfRange = errors.New("spill: read outside the object")
	// ErrCorrupt means a spill file no longer holds its objects' bytes.
	ErrCorrupt = errors.New("spill: spill file damaged")
	// ErrUnsafeDir means the spill folder is not one that only we control.
	ErrUnsafeDir = errors.New("spill: unsafe spill folder")
	// ErrInUse means another open Store (in this process or another) holds
	// the spill folder.
	ErrInUse = errors.New("spill: spill folder in use by another engine")
	// ErrConfig means a Config field is out of range.
	ErrConfig = errors.New("spill: bad configuration")
	// ErrClosed means the Store is closed.
	ErrClosed = errors.New("spill: store closed")
)

// DiskFullError is the error of a Spill refused because the file system
// holding Dir would pass the threshold. It matches ErrDiskFull.
type DiskFullError struct {
	Dir       string  // the spill folder
	Used      int64   // bytes in use on its file system, including spills in progress
	Size      int64   // size of its file system, in bytes
	Need      int64   // bytes the refused call would have added
	Threshold float64 // the configured threshold, a fraction of Size
}

// Error describes the folder, its usage and what was asked.
func (e *DiskFullError) Error() string {
	return fmt.Sprintf("spill: disk full: %s is %.1f%% full (%d of %d bytes), spilling %d more bytes would pass the %.0f%% threshold",
		e.Dir, 100*float64(e.Used)/float64(max(e.Size, 1)), e.Used, e.Size, e.Need, 100*e.Threshold)
}

// Is reports whether target is ErrDiskFull.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }
