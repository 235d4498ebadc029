package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/internal/objstore/spill"
)

// Spilling is measured in a child process with a cluster of its own:
// Config.SpillBytes are put, in objects of a 64th of that, into a store of
// a quarter of it, so that most of them spill, then read back.
const (
	childSpill    = "spill" // spill <cpus> <bytes>: the four figures below
	spillPrefix   = "spill_figures="
	diskWrite     = "disk_write_gigabytes"
	diskRead      = "disk_read_gigabytes"
	spillMetric   = "spill_gigabytes"
	restoreMetric = "restore_gigabytes"
)

// spillFigures are the child's results, in GB/s.
type spillFigures struct {
	diskWrite, diskRead, spill, restore float64
	spilled, restored                   int64   // bytes
	putRate, readRate                   float64 // end to end: the puts while spilling, the GetViews restoring
}

// spillFigure runs the child once per suite run and returns one of its
// figures.
func spillFigure(name string) func(e *env) (float64, string, error) {
	return func(e *env) (float64, string, error) {
		if e.spill == nil {
			f, err := runSpillChild(e)
			if err != nil {
				return 0, "", err
			}
			e.spill = f
		}
		f := e.spill
		switch name {
		case diskWrite:
			return f.diskWrite, "sequential write of a file in the spill folder", nil
		case diskRead:
			return f.diskRead, "sequential read of that file", nil
		case spillMetric:
			return f.spill, fmt.Sprintf("the raylet's spill time: %d MiB spilled while %s were put into a %s store at %.2f GB/s",
				f.spilled>>20, size(e.cfg.SpillBytes), size(e.cfg.SpillBytes/4), f.putRate), nil
		}
		return f.restore, fmt.Sprintf("the raylet's restore time: %d MiB restored, read back by GetView at %.2f GB/s", f.restored>>20, f.readRate), nil
	}
}

func runSpillChild(e *env) (*spillFigures, error) {
	cmd, err := self(e.ctx, childSpill, strconv.Itoa(e.cfg.NumCPUs), strconv.Itoa(e.cfg.SpillBytes))
	if err != nil {
		return nil, err
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("child: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), spillPrefix); ok {
			f := &spillFigures{}
			if _, err := fmt.Sscan(v, &f.diskWrite, &f.diskRead, &f.spill, &f.restore, &f.spilled, &f.restored, &f.putRate, &f.readRate); err != nil {
				return nil, fmt.Errorf("child's figures %q: %w", v, err)
			}
			return f, nil
		}
	}
	return nil, fmt.Errorf("child said nothing about spilling: %q", out)
}

// spillChild is the child side: it measures the disk, then spilling and
// restoring total bytes through a cluster of its own.
func spillChild(cpus float64, total int) error {
	spillStore, spillObject := total/4, total/64
	dir, err := os.MkdirTemp("", "rayo-bench-spill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	floorDir := filepath.Join(dir, "floor")
	if err := os.Mkdir(floorDir, 0o700); err != nil {
		return err
	}
	w, r, err := spill.MeasureFloor(floorDir, int64(total/2))
	if err != nil {
		return fmt.Errorf("disk floor: %w", err)
	}
	if err := rayo.Init(rayo.NumCPUs(cpus), rayo.LogToDriver(false),
		rayo.ObjectStoreMemory(int64(spillStore)), rayo.ObjectSpillingDir(filepath.Join(dir, "spill"))); err != nil {
		return err
	}
	defer rayo.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data := make([]byte, spillObject)
	for i := range data {
		data[i] = byte(i * 7)
	}
	before, err := spillCounters(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	refs := make([]rayo.Ref[[]byte], 0, total/spillObject)
	for range total / spillObject {
		ref := rayo.Put(ctx, data)
		if err := ref.Err(); err != nil {
			return err
		}
		refs = append(refs, ref)
	}
	putTime := time.Since(start)
	mid, err := spillCounters(ctx)
	if err != nil {
		return err
	}
	spilled, spillSecs := int64(mid[0]-before[0]), mid[2]-before[2]
	// Read back oldest first (those spilled), each let go once read, so
	// that restores find room without spilling again.
	start = time.Now()
	for _, ref := range refs {
		v, err := rayo.GetView(ctx, ref)
		if err != nil {
			return err
		}
		if n := len(v.Value()); n != spillObject {
			return fmt.Errorf("read back %d bytes, want %d", n, spillObject)
		}
		v.Release()
		ref.Release()
	}
	readTime := time.Since(start)
	end, err := spillCounters(ctx)
	if err != nil {
		return err
	}
	restored, restoreSecs := int64(end[1]-mid[1]), end[3]-mid[3]
	if spilled == 0 || restored == 0 || spillSecs <= 0 || restoreSecs <= 0 {
		return fmt.Errorf("nothing spilled (%d bytes) or restored (%d bytes)", spilled, restored)
	}
	fmt.Printf("%s%g %g %g %g %d %d %g %g\n", spillPrefix, w, r,
		float64(spilled)/spillSecs/1e9, float64(restored)/restoreSecs/1e9, spilled, restored,
		float64(total)/putTime.Seconds()/1e9, float64(restored)/readTime.Seconds()/1e9)
	return nil
}

// spillCounters reads the bytes spilled and restored so far, and the
// seconds the raylet spent spilling and restoring, from the embedded
// cluster's /metrics.
func spillCounters(ctx context.Context) ([4]float64, error) {
	var out [4]float64
	url := rayo.DashboardURL()
	if url == "" {
		return out, errors.New("no API server to read the spill metrics from")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return out, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for i, name := range []string{"rayo_object_spilled_bytes_total{", "rayo_object_restored_bytes_total{",
			"rayo_object_spill_seconds_sum{", "rayo_object_restore_seconds_sum{"} {
			if strings.HasPrefix(line, name) {
				f := strings.Fields(line)
				v, err := strconv.ParseFloat(f[len(f)-1], 64)
				if err != nil {
					return out, fmt.Errorf("metrics line %q: %w", line, err)
				}
				out[i] = v
			}
		}
	}
	return out, sc.Err()
}
