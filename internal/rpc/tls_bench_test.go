package rpc

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

const (
	mChunk      Method = 201
	benchChunk         = 4 << 20   // bytes per reply, as an object transfer's chunks
	benchTotal         = 256 << 20 // bytes per transfer
	benchFlight        = 4         // chunks in flight
)

// chunkServer answers mChunk with benchChunk raw bytes, sent from its own
// memory as a raylet sends an object's chunks from the store.
func chunkServer(b *testing.B, t *TLS) string {
	b.Helper()
	data := make([]byte, benchChunk)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(ln, func(*Conn) Handler {
		return HandlerFunc(func(c *Conn, m Method, kind Kind, id uint64, body []byte) {
			if kind == KindRequest {
				_ = c.ReplyRaw(id, data)
			}
		})
	}, nil)
	srv.UseTLS(t)
	srv.RequireToken(testSecret)
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// transfer pulls benchTotal bytes over c, benchFlight chunks at a time.
func transfer(b *testing.B, c *Conn) time.Duration {
	start := time.Now()
	done := make(chan error, benchFlight)
	sent, got := 0, 0
	for ; sent < benchFlight; sent++ {
		c.Go(mChunk, &pb.Empty{}, func(body []byte, err error) {
			if err == nil && len(body) != benchChunk {
				err = ErrCorrupt
			}
			done <- err
		})
	}
	for got < benchTotal/benchChunk {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		got++
		if sent < benchTotal/benchChunk {
			sent++
			c.Go(mChunk, &pb.Empty{}, func(body []byte, err error) {
				if err == nil && len(body) != benchChunk {
					err = ErrCorrupt
				}
				done <- err
			})
		}
	}
	return time.Since(start)
}

// BenchmarkTransferTLS moves 256 MiB over loopback TCP in 4 MiB chunks,
// in clear and over TLS 1.3, alternately in the same run, and reports
// both rates and their ratio (tls/plain): what TLS costs bulk transfers
// between nodes.
//
//	go test -run '^$' -bench TransferTLS -benchtime 5x ./internal/rpc/
func BenchmarkTransferTLS(b *testing.B) {
	ca, err := pki.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	srvCreds, _ := ca.Issue("server", nil)
	cliCreds, _ := ca.Issue("client", nil)
	plainAddr := chunkServer(b, nil)
	tlsAddr := chunkServer(b, NewTLS(srvCreds))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plain, err := DialTLS(ctx, "tcp:"+plainAddr, testSecret, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	secure, err := DialTLS(ctx, "tcp:"+tlsAddr, testSecret, NewTLS(cliCreds), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer secure.Close()
	transfer(b, plain) // warm both up
	transfer(b, secure)
	b.SetBytes(2 * benchTotal)
	b.ResetTimer()
	var tp, ts time.Duration
	for i := 0; i < b.N; i++ {
		tp += transfer(b, plain)
		ts += transfer(b, secure)
	}
	b.StopTimer()
	mb := float64(b.N) * benchTotal / 1e6
	b.ReportMetric(mb/tp.Seconds(), "plain-MB/s")
	b.ReportMetric(mb/ts.Seconds(), "tls-MB/s")
	b.ReportMetric(tp.Seconds()/ts.Seconds(), "tls/plain")
}

// BenchmarkRoundTripTLS makes small calls one at a time over loopback
// TCP, in clear and over TLS 1.3, alternately in the same run, and
// reports both latencies and their ratio (tls/plain).
//
//	go test -run '^$' -bench RoundTripTLS ./internal/rpc/
func BenchmarkRoundTripTLS(b *testing.B) {
	ca, err := pki.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	srvCreds, _ := ca.Issue("server", nil)
	cliCreds, _ := ca.Issue("client", nil)
	serve := func(t *TLS) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := NewServer(ln, func(*Conn) Handler { return echo }, nil)
		srv.UseTLS(t)
		srv.RequireToken(testSecret)
		b.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plain, err := DialTLS(ctx, "tcp:"+serve(nil), testSecret, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	secure, err := DialTLS(ctx, "tcp:"+serve(NewTLS(srvCreds)), testSecret, NewTLS(cliCreds), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer secure.Close()
	req := &pb.Status{Error: "a small request of a few dozen bytes, as a task's"}
	const batch = 100
	call := func(c *Conn) time.Duration {
		start := time.Now()
		for i := 0; i < batch; i++ {
			if err := c.Call(ctx, mEcho, req, &pb.Status{}); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	call(plain)
	call(secure)
	b.ResetTimer()
	var tp, ts time.Duration
	for i := 0; i < b.N; i++ {
		tp += call(plain)
		ts += call(secure)
	}
	b.StopTimer()
	n := float64(b.N * batch)
	b.ReportMetric(float64(tp.Microseconds())/n, "plain-µs/call")
	b.ReportMetric(float64(ts.Microseconds())/n, "tls-µs/call")
	b.ReportMetric(ts.Seconds()/tp.Seconds(), "tls/plain")
}
