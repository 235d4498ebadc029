package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The node's side of the control store: its registration, kept up across
// control store restarts, and what its raylet asks of the cluster (jobs and
// their executables, named actors). It implements raylet.Cluster.

// ReportInterval is how often a node reports its resources (and so that it
// lives) and takes the cluster's view back.
const ReportInterval = 250 * time.Millisecond

// DefaultGCSReconnectTimeout is how long a node goes on without hearing
// from its control store (Config.GCSReconnectTimeout, rayo start
// --gcs-reconnect-timeout) before it stops, fenced.
const DefaultGCSReconnectTimeout = 60 * time.Second

// binaryChunk is the size of the pieces executables move in.
const binaryChunk = 4 << 20

type gcsClient struct {
	addr, token string
	binDir      string // executables of jobs, by content hash
	register    func() *pb.NodeInfo
	onView      func(*pb.ClusterView)    // the cluster's view, pushed by the control store
	onBundles   func(*pb.BundleOp) error // the control store places placement group bundles here

	mu   sync.Mutex // protects conn
	conn *rpc.Conn

	fetchMu  sync.Mutex // protects fetching and verified
	fetching map[string]chan struct{}
	verified map[string]fileStamp // executables hashed, as they were then

	hashMu sync.Mutex // protects hashes
	hashes map[string]exeHash
}

type exeHash struct {
	size    int64
	modTime time.Time
	sum     string
}

// connect dials the control store and registers the node.
func (g *gcsClient) connect(ctx context.Context) error {
	c, err := rpc.DialToken(ctx, "tcp:"+g.addr, g.token, g.mux())
	if err != nil {
		return fmt.Errorf("node: cannot reach the cluster at %s: %w", g.addr, err)
	}
	st := &pb.Status{}
	if err := c.Call(ctx, rpc.MRegisterNode, g.register(), st); err != nil {
		_ = c.Close()
		return fmt.Errorf("node: register with %s: %w", g.addr, err)
	}
	if st.Error != "" {
		_ = c.Close()
		return fmt.Errorf("node: register with %s: %s", g.addr, st.Error)
	}
	g.mu.Lock()
	old := g.conn
	g.conn = c
	g.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// registerTimeout bounds a registration with a control store that has
// answered the dial: the node waits for its answer rather than give up,
// since a connection it closes after the control store took the
// registration tells the control store the node died.
const registerTimeout = 10 * time.Second

// reconnect dials the control store again and registers, within
// timeout (at most registerTimeout), unless stop is closed first. A
// control store slow to
// answer (loading its tables, writing them back to a Redis that lost
// them, on a busy machine) kept a node that gave up after half a second
// from ever coming back: it closed the connection it had registered on,
// and the control store declared it dead.
func (g *gcsClient) reconnect(stop <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, registerTimeout))
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-done:
		}
	}()
	return g.connect(ctx)
}

// mux takes what the control store pushes: the cluster's view when a node
// joins or dies or a job ends (between heartbeats, which also bring it),
// and placement group bundles to prepare, commit or release here.
func (g *gcsClient) mux() *rpc.Mux {
	mx := rpc.NewMux("node")
	rpc.HandleNotify(mx, rpc.PublishView, func(_ context.Context, v *pb.ClusterView) {
		if g.onView != nil {
			g.onView(v)
		}
	})
	rpc.Handle(mx, rpc.Bundles, func(_ context.Context, op *pb.BundleOp) (*pb.Status, error) {
		if g.onBundles == nil {
			return nil, errors.New("node: this node holds no bundles")
		}
		st := &pb.Status{}
		if err := g.onBundles(op); err != nil {
			st.Error = err.Error()
		}
		return st, nil
	})
	return mx
}

// current is the live connection, or nil while there is none.
func (g *gcsClient) current() *rpc.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn == nil || g.conn.Err() != nil {
		return nil
	}
	return g.conn
}

func (g *gcsClient) close() {
	g.mu.Lock()
	c := g.conn
	g.conn = nil
	g.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// call makes a request to the control store, waiting (within ctx) for it
// to come back if it is away.
func (g *gcsClient) call(ctx context.Context, m rpc.Method, req, resp proto.Message) error {
	for {
		c := g.current()
		if c != nil {
			err := c.Call(ctx, m, req, resp)
			// A connection that broke (closed, or reset by a control
			// store that was killed) is made again by the heartbeat loop;
			// an answer, even an error, is final.
			var answered *rpc.RemoteError
			if err == nil || errors.As(err, &answered) || !errors.Is(err, rpc.ErrClosed) && c.Err() == nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: the control store at %s is unreachable: %w", g.addr, ctx.Err())
		case <-time.After(50 * time.Millisecond): // the heartbeat loop reconnects
		}
	}
}

func (g *gcsClient) notify(m rpc.Method, msg proto.Message) {
	if c := g.current(); c != nil {
		_ = c.Notify(m, msg)
	}
}

// StartJob uploads the job's executable unless the control store has it,
// then records the job.
func (g *gcsClient) StartJob(ctx context.Context, info *pb.JobInfo) error {
	sum, size, err := g.hash(info.Exe)
	if err != nil {
		return err
	}
	info.ExeHash, info.ExeSize = sum, size
	st := &pb.Status{}
	if err := g.call(ctx, rpc.MGetBinary, &pb.GetBinary{Hash: sum}, st); err != nil {
		return err
	}
	if st.Error != "" {
		if err := g.upload(ctx, info.Exe, sum, size); err != nil {
			return err
		}
	}
	st = &pb.Status{}
	if err := g.call(ctx, rpc.MJobStarted, info, st); err != nil {
		return err
	}
	if st.Error != "" {
		return errors.New(st.Error)
	}
	return nil
}

// hash is the SHA-256 of an executable, remembered while it is unchanged.
func (g *gcsClient) hash(path string) (string, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, fmt.Errorf("node: job executable: %w", err)
	}
	g.hashMu.Lock()
	h, ok := g.hashes[path]
	g.hashMu.Unlock()
	if ok && h.size == fi.Size() && h.modTime.Equal(fi.ModTime()) {
		return h.sum, h.size, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("node: job executable: %w", err)
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return "", 0, fmt.Errorf("node: hash %s: %w", path, err)
	}
	sum := hex.EncodeToString(d.Sum(nil))
	g.hashMu.Lock()
	if g.hashes == nil {
		g.hashes = make(map[string]exeHash)
	}
	g.hashes[path] = exeHash{size: fi.Size(), modTime: fi.ModTime(), sum: sum}
	g.hashMu.Unlock()
	return sum, fi.Size(), nil
}

func (g *gcsClient) upload(ctx context.Context, path, sum string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("node: job executable: %w", err)
	}
	defer f.Close()
	buf := make([]byte, binaryChunk)
	// One chunk at least: an empty executable is stored too.
	for off := int64(0); off == 0 || off < size; {
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), size-off)])
		if err != nil && size > 0 {
			return fmt.Errorf("node: read %s: %w", path, err)
		}
		st := &pb.Status{}
		if err := g.call(ctx, rpc.MPutBinary, &pb.BinaryChunk{Hash: sum, Offset: off, Data: buf[:n], Size: size}, st); err != nil {
			return fmt.Errorf("node: upload %s: %w", path, err)
		}
		if st.Error != "" {
			return fmt.Errorf("node: upload %s: %s", path, st.Error)
		}
		if off += int64(n); n == 0 {
			break
		}
	}
	return nil
}

// EndJob tells the control store a job's driver is gone, and how (or how
// a job submission's entrypoint ended).
func (g *gcsClient) EndJob(end *pb.JobRequest) { g.notify(rpc.MJobEnded, end) }

// FetchJob returns a job and the path of its executable here, downloading
// it once per content hash.
func (g *gcsClient) FetchJob(ctx context.Context, id string) (*pb.JobInfo, string, error) {
	info := &pb.JobInfo{}
	if err := g.call(ctx, rpc.MGetJob, &pb.JobRequest{JobId: id}, info); err != nil {
		return nil, "", fmt.Errorf("node: job %s: %w", id, err)
	}
	if info.ExeHash == "" {
		return nil, "", fmt.Errorf("node: job %s has no executable", id)
	}
	path := filepath.Join(g.binDir, info.ExeHash)
	for {
		g.fetchMu.Lock()
		if g.stillVerifiedLocked(path) || cachedBinary(path, info.ExeHash, info.ExeSize) {
			// In use: pruneBinaries keeps it.
			now := time.Now()
			_ = os.Chtimes(path, now, now)
			g.markVerifiedLocked(path)
			g.fetchMu.Unlock()
			return info, path, nil
		}
		if ch := g.fetching[info.ExeHash]; ch != nil {
			g.fetchMu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
		}
		if g.fetching == nil {
			g.fetching = make(map[string]chan struct{})
		}
		ch := make(chan struct{})
		g.fetching[info.ExeHash] = ch
		g.fetchMu.Unlock()
		err := g.download(ctx, info.ExeHash, info.ExeSize, path)
		g.fetchMu.Lock()
		delete(g.fetching, info.ExeHash)
		close(ch)
		if err == nil {
			pruneBinaries(g.binDir, time.Now())
		}
		g.fetchMu.Unlock()
		if err != nil {
			return nil, "", err
		}
	}
}

// cachedBinary reports whether path holds the executable of content hash
// sum (hex SHA-256) and size bytes, hashing the whole file: a size check
// alone would run whatever was put there. FetchJob hashes a file again
// whenever it has changed since it last did (stillVerifiedLocked).
func cachedBinary(path, sum string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return false
	}
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return false
	}
	return hex.EncodeToString(d.Sum(nil)) == sum
}

// fileStamp names a file's content as it stands: any write, rename over
// it or change of its times or mode changes its inode or change time.
type fileStamp struct {
	dev, ino uint64
	size     int64
	ctime    syscall.Timespec
}

func stampOf(path string) (fileStamp, bool) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return fileStamp{}, false
	}
	return fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, ctime: st.Ctim}, true
}

// stillVerifiedLocked reports whether path is the very file this node
// hashed last (cachedBinary), untouched since: hashing a large executable
// again on every job it loads slowed the jobs' first tasks on other
// nodes. fetchMu is held.
func (g *gcsClient) stillVerifiedLocked(path string) bool {
	st, ok := stampOf(path)
	return ok && g.verified[path] == st
}

// markVerifiedLocked records path as hashed and found right, as it stands
// now. fetchMu is held.
func (g *gcsClient) markVerifiedLocked(path string) {
	st, ok := stampOf(path)
	if !ok {
		return
	}
	if g.verified == nil {
		g.verified = make(map[string]fileStamp)
	}
	g.verified[path] = st
}

// The node's cache of executables keeps those used in the last
// binaryCacheGrace and, of the others, the binaryCacheKeep used last.
const (
	binaryCacheGrace = 10 * time.Minute
	binaryCacheKeep  = 4
)

// pruneBinaries removes from the cache dir the executables past its
// bounds. An executable's modification time is when it was last used
// (FetchJob sets it); one removed while a job still needs it is
// downloaded again. fetchMu is held.
func pruneBinaries(dir string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type bin struct {
		name string
		used time.Time
	}
	var old []bin
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue // a download in progress is .part-*
		}
		if now.Sub(fi.ModTime()) > binaryCacheGrace {
			old = append(old, bin{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(old, func(i, k int) bool { return old[i].used.After(old[k].used) })
	for _, b := range old[min(len(old), binaryCacheKeep):] {
		_ = os.Remove(filepath.Join(dir, b.name))
	}
}

func (g *gcsClient) download(ctx context.Context, sum string, size int64, path string) error {
	if err := os.MkdirAll(g.binDir, 0o700); err != nil {
		return fmt.Errorf("node: binary cache: %w", err)
	}
	tmp, err := os.CreateTemp(g.binDir, ".part-*")
	if err != nil {
		return fmt.Errorf("node: binary cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	d := sha256.New()
	for off := int64(0); off < size; {
		c := g.current()
		if c == nil {
			return fmt.Errorf("node: download %s: the control store is unreachable", sum[:12])
		}
		b, err := c.CallRaw(ctx, rpc.MGetBinary, &pb.GetBinary{Hash: sum, Offset: off, Length: binaryChunk})
		if err != nil {
			return fmt.Errorf("node: download %s: %w", sum[:12], err)
		}
		if len(b) == 0 {
			return fmt.Errorf("node: download %s: short at %d of %d bytes", sum[:12], off, size)
		}
		if _, err := tmp.Write(b); err != nil {
			return fmt.Errorf("node: binary cache: %w", err)
		}
		d.Write(b)
		off += int64(len(b))
	}
	if got := hex.EncodeToString(d.Sum(nil)); got != sum {
		return fmt.Errorf("node: download %s: content hash is %s", sum[:12], got[:12])
	}
	if err := tmp.Chmod(0o755); err != nil {
		return fmt.Errorf("node: binary cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("node: binary cache: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// RegisterActorName names an actor cluster-wide.
func (g *gcsClient) RegisterActorName(ctx context.Context, a *pb.ActorName) error {
	r := &pb.ActorNameReply{}
	if err := g.call(ctx, rpc.MRegisterActorName, a, r); err != nil {
		return err
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// LookupActorName finds a named actor cluster-wide.
func (g *gcsClient) LookupActorName(ctx context.Context, namespace, name string) (*pb.ActorName, error) {
	r := &pb.ActorNameReply{}
	if err := g.call(ctx, rpc.MLookupActorName, &pb.ActorName{Namespace: namespace, Name: name}, r); err != nil {
		return nil, err
	}
	if r.Error != "" {
		return nil, errors.New(r.Error)
	}
	return r.Actor, nil
}

// ActorAlive records where a detached actor runs.
func (g *gcsClient) ActorAlive(actorID []byte, workerAddr string) {
	g.notify(rpc.MActorAlive, &pb.ActorName{ActorId: actorID, WorkerAddr: workerAddr})
}

// ActorGone frees a dead actor's name.
func (g *gcsClient) ActorGone(actorID []byte) {
	g.notify(rpc.MActorGone, &pb.ActorName{ActorId: actorID})
}

// ReportEvents passes a batch of task and actor events to the control
// store (dropped while it is away: events are for observing, not for
// running).
func (g *gcsClient) ReportEvents(b *pb.StateEvents) { g.notify(rpc.MReportEvents, b) }

// ListState asks the control store for tasks or actors.
func (g *gcsClient) ListState(ctx context.Context, m rpc.Method, q *pb.StateQuery) (*pb.StateList, error) {
	l := &pb.StateList{}
	if err := g.call(ctx, m, q, l); err != nil {
		return nil, err
	}
	return l, nil
}

// PlacementGroup passes a placement group request to the control store.
func (g *gcsClient) PlacementGroup(ctx context.Context, req *pb.PlacementGroupRequest) (*pb.PlacementGroupReply, error) {
	r := &pb.PlacementGroupReply{}
	if err := g.call(ctx, rpc.MPlacementGroup, req, r); err != nil {
		return nil, err
	}
	return r, nil
}
