package spill

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// floorChunk is the size of each write and read of the floor measurement.
const floorChunk = 8 << 20

// MeasureFloor measures the disk floor that spilling is compared with: a
// plain sequential write of a file of the given size in dir, one write(2) of
// 8 MiB after another, then a sequential read of it back, in GB/s (1e9
// bytes per second). As Spill, the write is not fsynced. The source is a
// buffer of up to 256 MiB, larger than any CPU cache, as an object store
// is. The file is removed before MeasureFloor returns.
func MeasureFloor(dir string, bytes int64) (writeGBps, readGBps float64, err error) {
	if bytes <= 0 {
		return 0, 0, fmt.Errorf("%w: floor of %d bytes", ErrConfig, bytes)
	}
	buf := make([]byte, min(bytes, 256<<20))
	for i := range buf {
		buf[i] = byte(i*7 + i>>12)
	}
	f, err := os.CreateTemp(dir, filePrefix+"floor-*")
	if err != nil {
		return 0, 0, fmt.Errorf("spill: floor file in %s: %w", dir, err)
	}
	defer func() {
		err = errors.Join(err, f.Close(), os.Remove(f.Name()))
	}()
	fd := int(f.Fd())
	wd, err := floorPass(fd, buf, bytes, unix.Pwrite)
	if err != nil {
		return 0, 0, fmt.Errorf("spill: writing %s: %w", filepath.Base(f.Name()), err)
	}
	rd, err := floorPass(fd, buf, bytes, unix.Pread)
	if err != nil {
		return 0, 0, fmt.Errorf("spill: reading %s: %w", filepath.Base(f.Name()), err)
	}
	return float64(bytes) / wd.Seconds() / 1e9, float64(bytes) / rd.Seconds() / 1e9, nil
}

// floorPass writes or reads bytes of fd sequentially in floorChunk pieces,
// cycling through buf, and times it.
func floorPass(fd int, buf []byte, bytes int64, io func(int, []byte, int64) (int, error)) (time.Duration, error) {
	start := time.Now()
	var bo int64 // offset in buf
	for off := int64(0); off < bytes; {
		if bo == int64(len(buf)) {
			bo = 0
		}
		p := buf[bo:min(bo+floorChunk, int64(len(buf)), bo+bytes-off)]
		n, err := io(fd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, fmt.Errorf("no progress at byte %d", off)
		}
		off += int64(n)
		bo += int64(n)
	}
	return time.Since(start), nil
}
