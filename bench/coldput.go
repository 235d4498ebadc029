package bench

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rayo-dev/rayo"
)

// childColdPut is the child mode of single_client_put_gigabytes_cold:
// cold-put <bytes> <cpus>.
const childColdPut = "cold-put"

// coldPutPrefix starts the line on which the cold-put child reports, in
// ns: the first put's duration, the time from Init's return to it, then
// the second put's duration and the time between the two puts.
const coldPutPrefix = "cold_put_ns="

// coldRuns is how many fresh clusters single_client_put_gigabytes_cold
// measures at most (at least three, more while cfg.Duration lasts).
const coldRuns = 5

// single_client_put_gigabytes_cold: the first Put of a []byte of
// cfg.PutBytes into a node store no object has ever used, in GB (1e9
// bytes) per second. Each measurement is a fresh process with a fresh
// embedded cluster, whose store pages no process has touched: the child
// calls rayo.Init, then fills its data (as a program computes what it
// puts) and puts it once. The figure is the median of 3 to coldRuns
// children; the note gives the slowest and fastest, the median time from
// Init's return to the Put, and the median rate of a second put of as
// many fresh bytes (new data, the first object still held, so that it
// lands on store pages no object has used either), which the driver's
// prefault window (objstore.Arena.PrefaultAhead), started by the first
// put, has had the time it took to fill the data to prepare.
func putGigabytesCold(e *env) (float64, string, error) {
	var rates, gaps, seconds, between []float64
	deadline := time.Now().Add(e.cfg.Duration)
	for len(rates) < 3 || (len(rates) < coldRuns && time.Now().Before(deadline)) {
		cmd, err := self(e.ctx, childColdPut, strconv.Itoa(e.cfg.PutBytes), strconv.Itoa(e.cfg.NumCPUs))
		if err != nil {
			return 0, "", err
		}
		out, err := cmd.Output()
		if err != nil {
			return 0, "", fmt.Errorf("child: %w", err)
		}
		var ns []int64
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), coldPutPrefix); ok {
				for _, f := range strings.Fields(v) {
					x, err := strconv.ParseInt(f, 10, 64)
					if err != nil {
						return 0, "", fmt.Errorf("child's report %q: %w", v, err)
					}
					ns = append(ns, x)
				}
			}
		}
		if len(ns) != 4 || ns[0] <= 0 || ns[2] <= 0 {
			return 0, "", fmt.Errorf("child said nothing about its puts: %q", out)
		}
		rates = append(rates, float64(e.cfg.PutBytes)/float64(ns[0])) // bytes/ns = GB/s
		gaps = append(gaps, float64(ns[1])/1e6)
		seconds = append(seconds, float64(e.cfg.PutBytes)/float64(ns[2]))
		between = append(between, float64(ns[3])/1e6)
	}
	return median(rates), fmt.Sprintf("median of %d fresh clusters (%.2f–%.2f GB/s), %s each, Init to Put %.0f ms; a second put into fresh pages %.2f GB/s (%.0f ms later)",
		len(rates), minOf(rates), slices.Max(rates), size(e.cfg.PutBytes), median(gaps), median(seconds), median(between)), nil
}

// coldPut is the child side of single_client_put_gigabytes_cold: it
// returns the first put's duration, the time from Init to it, the second
// put's and the time between the two.
func coldPut(n int, cpus float64) ([4]time.Duration, error) {
	var out [4]time.Duration
	if err := rayo.Init(rayo.NumCPUs(cpus), rayo.LogToDriver(false), rayo.DashboardPort(0)); err != nil {
		return out, err
	}
	defer rayo.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mark := time.Now()
	var refs []rayo.Ref[[]byte]
	for i := range 2 {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(i + j)
		}
		start := time.Now()
		ref := rayo.Put(ctx, data)
		if err := ref.Err(); err != nil {
			return out, err
		}
		out[2*i], out[2*i+1] = time.Since(start), start.Sub(mark)
		mark = start.Add(out[2*i])
		refs = append(refs, ref) // held: the second put goes to fresh pages
	}
	for i, ref := range refs {
		got, err := rayo.Get(ctx, ref)
		if err != nil {
			return out, err
		}
		if len(got) != n || got[n-1] != byte(i+n-1) {
			return out, fmt.Errorf("get of put %d returned %d bytes ending in %d, want %d ending in %d", i, len(got), got[len(got)-1], n, byte(i+n-1))
		}
	}
	return out, nil
}
