package spill

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rayo-dev/rayo/internal/ids"
)

// benchBytes is the volume each benchmark iteration moves.
const benchBytes = 256 << 20

// benchSource is a buffer as large as the volume: the arena the objects
// are spilled from, or the floor's source.
func benchSource() []byte {
	buf := make([]byte, benchBytes)
	for off := 0; off < len(buf); {
		off += copy(buf[off:], pool)
	}
	return buf
}

// BenchmarkDiskWrite is the floor of BenchmarkSpill: a plain sequential
// write of a new file of benchBytes in the same kind of folder.
//
// Both it and BenchmarkSpill begin with an untimed pass: on a VM, the first
// use of fresh memory for the page cache can be several times slower (the
// host backs the guest's pages on first touch), and would penalize
// whichever benchmark runs first.
func BenchmarkDiskWrite(b *testing.B) {
	dir, src := b.TempDir(), benchSource()
	b.SetBytes(benchBytes)
	for i := -1; i < b.N; i++ { // i == -1: warm-up, untimed
		if i == 0 {
			b.ResetTimer()
		}
		path := filepath.Join(dir, "floor")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := floorPass(int(f.Fd()), src, benchBytes, unix.Pwrite); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = f.Close()
		_ = os.Remove(path)
		b.StartTimer()
	}
}

// BenchmarkDiskRead is the floor of BenchmarkRestore: a plain sequential
// read of a file of benchBytes.
func BenchmarkDiskRead(b *testing.B) {
	dir, buf := b.TempDir(), benchSource()
	f, err := os.Create(filepath.Join(dir, "floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := floorPass(int(f.Fd()), buf, benchBytes, unix.Pwrite); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := floorPass(int(f.Fd()), buf, benchBytes, unix.Pread); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSizes are the object sizes of BenchmarkSpill and BenchmarkRestore.
var benchSizes = []struct {
	name string
	size int
}{
	{"200KiB", 200 << 10},
	{"8MiB", 8 << 20},
	{"128MiB", 128 << 20},
}

// benchObjects cuts src into objects of the given size, with fresh IDs.
func benchObjects(src []byte, size int) []Object {
	var out []Object
	for off := 0; off+size <= len(src); off += size {
		out = append(out, Object{ID: ids.ForPut(), Data: src[off : off+size]})
	}
	return out
}

// BenchmarkSpill spills benchBytes of objects of each size per iteration
// with the default configuration, then deletes them (untimed), after an
// untimed warm-up pass (see BenchmarkDiskWrite).
func BenchmarkSpill(b *testing.B) {
	src := benchSource()
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s, err := Open(Config{Dir: filepath.Join(b.TempDir(), "spill")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(benchBytes)
			for i := -1; i < b.N; i++ { // i == -1: warm-up, untimed
				if i == 0 {
					b.ResetTimer()
				}
				objs := benchObjects(src, bs.size)
				if err := s.Spill(context.Background(), objs); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				for _, o := range objs {
					if err := s.Delete(o.ID); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRestore reads benchBytes of spilled objects of each size back
// into memory per iteration, one object after another, each with one
// ReadAt, as a restore does.
func BenchmarkRestore(b *testing.B) {
	src := benchSource()
	dst := make([]byte, benchBytes)
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			s, err := Open(Config{Dir: filepath.Join(b.TempDir(), "spill")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			objs := benchObjects(src, bs.size)
			if err := s.Spill(context.Background(), objs); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchBytes)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := 0
				for _, o := range objs {
					n, err := s.ReadAt(o.ID, dst[off:off+len(o.Data)], 0)
					if err != nil {
						b.Fatal(err)
					}
					off += n
				}
			}
		})
	}
}

// BenchmarkVersusFloor pairs each measurement with its floor, taken just
// before it, since the machine's speed drifts more between benchmarks than
// within one iteration: per iteration, a plain sequential write of
// benchBytes then a Spill of as many bytes of objects, and a plain
// sequential read then a restore of them all. It reports the medians of the
// paired ratios: spill/floor and restore/floor (1 is as fast as the disk).
func BenchmarkVersusFloor(b *testing.B) {
	src := benchSource()
	dst := make([]byte, benchBytes)
	for _, bs := range benchSizes {
		b.Run(bs.name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "spill")
			s, err := Open(Config{Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var spills, restores []float64
			for i := 0; i < b.N; i++ {
				f, err := os.CreateTemp(dir, "floor-*")
				if err != nil {
					b.Fatal(err)
				}
				fw, err := floorPass(int(f.Fd()), src, benchBytes, unix.Pwrite)
				if err != nil {
					b.Fatal(err)
				}
				fr, err := floorPass(int(f.Fd()), dst, benchBytes, unix.Pread)
				if err != nil {
					b.Fatal(err)
				}
				_ = f.Close()
				_ = os.Remove(f.Name())

				objs := benchObjects(src, bs.size)
				start := time.Now()
				if err := s.Spill(context.Background(), objs); err != nil {
					b.Fatal(err)
				}
				sw := time.Since(start)
				start = time.Now()
				off := 0
				for _, o := range objs {
					n, err := s.ReadAt(o.ID, dst[off:off+len(o.Data)], 0)
					if err != nil {
						b.Fatal(err)
					}
					off += n
				}
				sr := time.Since(start)
				for _, o := range objs {
					if err := s.Delete(o.ID); err != nil {
						b.Fatal(err)
					}
				}
				spills = append(spills, fw.Seconds()/sw.Seconds())
				restores = append(restores, fr.Seconds()/sr.Seconds())
			}
			b.ReportMetric(median(spills), "spill/floor")
			b.ReportMetric(median(restores), "restore/floor")
		})
	}
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}
