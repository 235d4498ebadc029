package bench

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rayo-dev/rayo"
)

// childColdPut is the child mode of single_client_put_gigabytes_cold:
// cold-put <bytes> <cpus>.
const childColdPut = "cold-put"

// coldPutPrefix starts the line on which the cold-put child reports: the
// put's duration and the time from Init's return to the put, in ns.
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
// children; the note gives the slowest and fastest, and the median time
// from Init's return to the Put (in which the store works in the
// background ahead of the put).
func putGigabytesCold(e *env) (float64, string, error) {
	var rates, gaps []float64
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
		var put, gap int64 = -1, -1
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), coldPutPrefix); ok {
				if p, g, ok := strings.Cut(v, " "); ok {
					put, _ = strconv.ParseInt(p, 10, 64)
					gap, _ = strconv.ParseInt(g, 10, 64)
				}
			}
		}
		if put <= 0 || gap < 0 {
			return 0, "", fmt.Errorf("child said nothing about its put: %q", out)
		}
		rates = append(rates, float64(e.cfg.PutBytes)/float64(put)) // bytes/ns = GB/s
		gaps = append(gaps, float64(gap)/1e6)
	}
	maxRate := rates[0]
	for _, r := range rates {
		maxRate = max(maxRate, r)
	}
	return median(rates), fmt.Sprintf("median of %d fresh clusters (%.2f–%.2f GB/s), %s each; Init to Put %.0f ms",
		len(rates), minOf(rates), maxRate, size(e.cfg.PutBytes), median(gaps)), nil
}

// coldPut is the child side of single_client_put_gigabytes_cold.
func coldPut(n int, cpus float64) (put, gap time.Duration, err error) {
	if err := rayo.Init(rayo.NumCPUs(cpus), rayo.LogToDriver(false), rayo.DashboardPort(0)); err != nil {
		return 0, 0, err
	}
	defer rayo.Shutdown()
	inited := time.Now()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	ref := rayo.Put(ctx, data)
	if err := ref.Err(); err != nil {
		return 0, 0, err
	}
	put = time.Since(start)
	got, err := rayo.Get(ctx, ref)
	if err != nil {
		return 0, 0, err
	}
	if len(got) != n || got[n-1] != byte(n-1) {
		return 0, 0, fmt.Errorf("get after put returned %d bytes ending in %d, want %d ending in %d", len(got), got[len(got)-1], n, byte(n-1))
	}
	return put, start.Sub(inited), nil
}
