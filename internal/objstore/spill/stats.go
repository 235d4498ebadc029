package spill

import (
	"time"

	"golang.org/x/sys/unix"
)

// Stats describes a Store: gauges of what is on disk now, and totals since
// Open.
type Stats struct {
	Objects   int   // spilled objects
	LiveBytes int64 // their sizes summed
	DiskBytes int64 // disk space the spill files take (st_blocks)
	Files     int   // spill files

	SpilledObjects  int64 // objects written by successful Spill calls
	SpilledBytes    int64 // their bytes
	RestoredObjects int64 // reads that reached the end of their object without error
	RestoredBytes   int64 // bytes read by ReadAt
	DeletedObjects  int64 // objects deleted
	FailedSpills    int64 // Spill calls that failed or were cancelled after placing their objects

	SpillCalls int64         // successful Spill calls
	SpillTime  time.Duration // their durations summed
	ReadCalls  int64         // ReadAt calls that read
	ReadTime   time.Duration // their durations summed
}

// Stats returns the store's current figures.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	st.Objects = len(s.mu.objects)
	st.LiveBytes = s.mu.live
	st.Files = len(s.mu.files)
	for f := range s.mu.files {
		var fs unix.Stat_t
		if unix.Fstat(f.fd, &fs) == nil {
			st.DiskBytes += fs.Blocks * 512
		}
	}
	return st
}
