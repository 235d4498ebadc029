package rpc

import (
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWriteOneBuffer writes a task-sized frame to a Unix socket
// whose peer drains it, with write and with a writev of one vector,
// alternately in rounds of 1,000 in the same run. It reports the best
// round of each and their ratio (writev/write): the reason flushLocked
// writes its single buffer with write.
//
//	go test -run '^$' -bench WriteOneBuffer ./internal/rpc/
func BenchmarkWriteOneBuffer(b *testing.B) {
	ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "w.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		peer, err := ln.Accept()
		if err != nil {
			return
		}
		defer peer.Close()
		_, _ = io.Copy(io.Discard, peer)
	}()
	nc, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	frame := make([]byte, 120)
	const round = 1000
	ways := [2]func() error{
		func() error { _, err := nc.Write(frame); return err },
		func() error { _, err := (&net.Buffers{frame}).WriteTo(nc); return err },
	}
	best := [2]time.Duration{time.Hour, time.Hour}
	for n := 0; n < b.N; n += len(ways) * round {
		for k, write := range ways {
			start := time.Now()
			for range round {
				if err := write(); err != nil {
					b.Fatal(err)
				}
			}
			best[k] = min(best[k], time.Since(start))
		}
	}
	b.ReportMetric(float64(best[0].Nanoseconds())/round, "write-ns")
	b.ReportMetric(float64(best[1].Nanoseconds())/round, "writev-ns")
	b.ReportMetric(float64(best[1])/float64(best[0]), "writev/write")
}
