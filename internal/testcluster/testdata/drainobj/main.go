// Command drainobj is the driver of the drain tests: it makes objects
// whose only copies are on node B (a MaxRetries(0) task's returns, some of
// them spilled there, and an actor method's return), says ready=1, waits
// for a line on stdin (the test drains B meanwhile), then reads each
// object from a task on node C and here, and prints key=value lines.
// With a folder DIR, a last MaxRetries(0) task runs on B during the drain:
// it starts before ready=1 (DIR/started) and returns its 8 MiB once the
// test writes DIR/release.
//
//	drainobj B C N [DIR]    N task returns of 8 MiB, and one actor return
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/internal/testcluster/pattern"
)

const size = 8 << 20

func sum(b []byte) string { return fmt.Sprintf("%08x", crc32.ChecksumIEEE(b)) }

// blob is a large return value, stored in its node's store.
var blob = rayo.Func1(func(seed int) []byte { return pattern.Bytes(size, uint64(seed)) })

// held runs until dir/release exists (bounded), then returns a large
// value.
var held = rayo.Func2(func(dir string, seed int) []byte {
	_ = os.WriteFile(filepath.Join(dir, "started"), nil, 0o644)
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) { // polling the test's file
		if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
			break
		}
	}
	return pattern.Bytes(size, uint64(seed))
})

// crcAt is the checksum of b, and where it was computed.
var crcAt = rayo.Func1(func(b []byte) string { return sum(b) + "@" + rayo.NodeID() })

// Maker is an actor whose method returns a large value.
type Maker struct{}

// Blob is what blob returns, made by an actor.
func (Maker) Blob(seed int) []byte { return pattern.Bytes(size, uint64(seed)) }

var newMaker = rayo.Actor0(func() Maker { return Maker{} })
var makeBlob = rayo.Method1(newMaker, Maker.Blob)

func main() {
	if err := rayo.Init(); err != nil {
		fmt.Println("init_err=" + err.Error())
		os.Exit(1)
	}
	defer rayo.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := ""
	if len(os.Args) > 4 {
		dir = os.Args[4]
	}
	if err := run(ctx, os.Args[1], os.Args[2], os.Args[3], dir); err != nil {
		fmt.Println("err=" + err.Error())
		rayo.Shutdown()
		os.Exit(1)
	}
}

func run(ctx context.Context, b, c, count, dir string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	refs, sums, err := makeOnB(ctx, b, n)
	if err != nil {
		return err
	}
	if dir != "" {
		// Runs on B while it is drained; its return is made there then.
		ref, err := holdOnB(b, dir, n+1)
		if err != nil {
			return err
		}
		refs = append(refs, ref)
		sums = append(sums, sum(pattern.Bytes(size, uint64(n+1))))
	}
	fmt.Println("ready=1")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // the test drains B

	start := time.Now()
	res, err := readEach(ctx, c, refs, sums)
	if err != nil {
		return err
	}
	fmt.Printf("mismatches=%d\nread_on_c=%d\nlost=%d\n", res.mismatches, res.onC, res.lost)
	fmt.Printf("lost_errs=%q\n", strings.Join(res.lostErrs, " | "))
	fmt.Printf("read_ms=%d\n", time.Since(start).Milliseconds())
	return nil
}

// makeOnB makes n task returns and one actor return on node b, waits until
// all are ready without reading them, and kills the actor. It returns the
// refs and the checksums their values must have.
func makeOnB(ctx context.Context, b string, n int) ([]rayo.Ref[[]byte], []string, error) {
	refs := make([]rayo.Ref[[]byte], n+1)
	sums := make([]string, n+1)
	for i := range n {
		refs[i] = blob.Options(rayo.Name(fmt.Sprintf("drain-blob-%d", i)), rayo.NodeAffinity(b, false), rayo.MaxRetries(0)).Remote(rayo.V(i))
		sums[i] = sum(pattern.Bytes(size, uint64(i)))
	}
	maker := newMaker.Options(rayo.NodeAffinity(b, false)).Remote()
	refs[n] = makeBlob.Remote(maker, rayo.V(n))
	sums[n] = sum(pattern.Bytes(size, uint64(n)))
	// Ready, but never read here before the drain: no copy leaves B.
	if _, _, err := rayo.Wait(ctx, refs, len(refs)); err != nil {
		return nil, nil, err
	}
	for _, r := range refs {
		if err := r.Err(); err != nil {
			return nil, nil, err
		}
	}
	// The actor goes, so that B has no work left; its return stays.
	if err := rayo.Kill(ctx, maker); err != nil {
		return nil, nil, err
	}
	return refs, sums, nil
}

// holdOnB submits the held task on node b and waits until it has started.
func holdOnB(b, dir string, seed int) (rayo.Ref[[]byte], error) {
	ref := held.Options(rayo.Name("drain-held"), rayo.NodeAffinity(b, false), rayo.MaxRetries(0)).Remote(rayo.V(dir), rayo.V(seed))
	for end := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) { // polling the task's file
		if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
			break
		}
		if time.Now().After(end) {
			return ref, errors.New("the held task did not start on B")
		}
	}
	return ref, nil
}

// readResult is what reading the objects after the drain found.
type readResult struct {
	mismatches, onC, lost int
	lostErrs              []string
}

// readEach reads each of refs from a task on node c and here, and checks
// its value against sums.
func readEach(ctx context.Context, c string, refs []rayo.Ref[[]byte], sums []string) (readResult, error) {
	var res readResult
	remote := make([]rayo.Ref[string], len(refs))
	for i, r := range refs {
		remote[i] = crcAt.Options(rayo.NodeAffinity(c, false)).Remote(r)
	}
	for i, r := range refs {
		got, err := rayo.Get(ctx, remote[i])
		if err != nil {
			// Lost: the driver's own read says so too.
			if _, gerr := rayo.Get(ctx, r); errors.Is(gerr, rayo.ErrObjectLost) {
				res.lost++
				res.lostErrs = append(res.lostErrs, oneLine(gerr))
				continue
			}
			return res, fmt.Errorf("read on %s: %w", c, err)
		}
		crc, node, _ := strings.Cut(got, "@")
		if crc != sums[i] {
			res.mismatches++
		}
		if node == c {
			res.onC++
		}
		v, err := rayo.Get(ctx, r)
		if err != nil {
			return res, fmt.Errorf("read here: %w", err)
		}
		if sum(v) != sums[i] {
			res.mismatches++
		}
	}
	return res, nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
