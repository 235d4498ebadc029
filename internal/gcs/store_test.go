package gcs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestRestartKeepsTables fills a control store, closes it and starts a
// new one on the same storage: everything is there, and the node comes
// back to it.
func TestRestartKeepsTables(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		s1, addr1 := serve(t, storage())
		c1 := dial(t, addr1)
		nodeID := ids.NewNodeID()
		registerNode(t, c1, nodeID, "10.0.0.1:7000")
		exe := fillTables(t, c1, nodeID)
		hash := sha(exe)

		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}

		s2, addr2 := serve(t, storage())
		if st := state(s2, "10.0.0.1:7000"); st != StateAlive {
			t.Fatalf("node after the restart: %s", st)
		}
		jobs := s2.Jobs()
		if len(jobs) != 1 || jobs[0].JobId != "job-1" || jobs[0].State != JobRunning || jobs[0].StartUnixMs == 0 || jobs[0].ExeHash != hash {
			t.Fatalf("jobs after the restart: %v", jobs)
		}
		c2 := dial(t, addr2)
		checkTablesAfterRestart(t, c2, exe)

		// The node comes back and beats.
		registerNode(t, c2, nodeID, "10.0.0.1:7000")
		view := &pb.ClusterView{}
		call(t, c2, rpc.MHeartbeat, &pb.Heartbeat{NodeId: nodeID[:], Available: []*pb.Resource{{Name: "CPU", Quantity: 1}}}, view)
		if len(view.Nodes) != 1 || view.Nodes[0].State != StateAlive || view.Nodes[0].Available[0].Quantity != 1 {
			t.Fatalf("cluster view: %v", view)
		}
	})
}

// fillTables fills every table through c1: a job of node nodeID with its
// executable, KV entries, and named actors. It returns the executable.
func fillTables(t *testing.T, c1 *rpc.Conn, nodeID ids.NodeID) []byte {
	t.Helper()
	// An executable in five chunks, out of order.
	exe := randomBytes(t, 300_000)
	startJobWithExe(t, c1, nodeID, exe, []int{3, 0, 4, 1, 2})

	kv := &pb.KVReply{}
	call(t, c1, rpc.MKVPut, &pb.KVEntry{Namespace: "ns", Key: "a", Value: []byte("1")}, kv)
	call(t, c1, rpc.MKVPut, &pb.KVEntry{Namespace: "ns", Key: "b", Value: []byte("2")}, kv)
	call(t, c1, rpc.MKVPut, &pb.KVEntry{Namespace: "other", Key: "a", Value: []byte("x")}, kv)
	call(t, c1, rpc.MKVPut, &pb.KVEntry{Namespace: "ns", Key: "gone", Value: []byte("3")}, kv)
	call(t, c1, rpc.MKVDel, &pb.KVEntry{Namespace: "ns", Key: "gone"}, kv)

	// A detached named actor, with the worker it runs on, and a
	// named actor that goes away.
	actor, other := []byte("actor-1"), []byte("actor-2")
	nr := &pb.ActorNameReply{}
	call(t, c1, rpc.MRegisterActorName, &pb.ActorName{Name: "keeper", Namespace: "app", ActorId: actor, OwnerAddr: "owner", Class: "Keeper", Detached: true}, nr)
	call(t, c1, rpc.MRegisterActorName, &pb.ActorName{Name: "temp", Namespace: "app", ActorId: other}, nr)
	if nr.Error != "" {
		t.Fatal(nr.Error)
	}
	if err := c1.Notify(rpc.MActorAlive, &pb.ActorName{ActorId: actor, WorkerAddr: "/tmp/w-1.sock|10.0.0.1:7001|n1"}); err != nil {
		t.Fatal(err)
	}
	if err := c1.Notify(rpc.MActorGone, &pb.ActorName{ActorId: other}); err != nil {
		t.Fatal(err)
	}
	// Frames of one connection are served in order: this reply comes
	// after the notifications took effect.
	call(t, c1, rpc.MLookupActorName, &pb.ActorName{Name: "keeper", Namespace: "app"}, nr)
	if nr.Actor.GetWorkerAddr() == "" {
		t.Fatalf("worker address not recorded: %v", nr)
	}
	return exe
}

// checkTablesAfterRestart checks through c2 that what fillTables wrote
// survived a restart: the executable exe, the KV entries and the actor names.
func checkTablesAfterRestart(t *testing.T, c2 *rpc.Conn, exe []byte) {
	t.Helper()
	hash := sha(exe)
	actor := []byte("actor-1")
	st := &pb.Status{}
	call(t, c2, rpc.MGetBinary, &pb.GetBinary{Hash: hash}, st)
	if st.Error != "" {
		t.Fatalf("binary after the restart: %s", st.Error)
	}
	if got := download(t, c2, hash, int64(len(exe)), 100_000); !bytes.Equal(got, exe) {
		t.Fatalf("binary after the restart differs: %d bytes, want %d", len(got), len(exe))
	}
	kv := &pb.KVReply{}
	for _, e := range []*pb.KVEntry{{Namespace: "ns", Key: "a", Value: []byte("1")}, {Namespace: "ns", Key: "b", Value: []byte("2")}, {Namespace: "other", Key: "a", Value: []byte("x")}} {
		call(t, c2, rpc.MKVGet, &pb.KVEntry{Namespace: e.Namespace, Key: e.Key}, kv)
		if !kv.Found || string(kv.Value) != string(e.Value) {
			t.Fatalf("kv %s/%s after the restart: %v", e.Namespace, e.Key, kv)
		}
	}
	call(t, c2, rpc.MKVKeys, &pb.KVEntry{Namespace: "ns"}, kv)
	if !slices.Equal(kv.Keys, []string{"a", "b"}) {
		t.Fatalf("kv keys after the restart: %v", kv.Keys)
	}
	nr := &pb.ActorNameReply{}
	call(t, c2, rpc.MLookupActorName, &pb.ActorName{Name: "keeper", Namespace: "app"}, nr)
	if a := nr.Actor; a == nil || string(a.ActorId) != string(actor) || !a.Detached || a.Class != "Keeper" ||
		a.WorkerAddr != "/tmp/w-1.sock|10.0.0.1:7001|n1" {
		t.Fatalf("named actor after the restart: %v", nr)
	}
	call(t, c2, rpc.MLookupActorName, &pb.ActorName{Name: "temp", Namespace: "app"}, nr)
	if !strings.Contains(nr.Error, "no actor") {
		t.Fatalf("a gone actor's name after the restart: %v", nr)
	}
}

// TestRestartedNodeFenced: a node loaded from storage that does not come
// back within the health timeout is declared dead, and stays dead: its
// heartbeat and its registration under the same ID are refused, across
// restarts too.
func TestRestartedNodeFenced(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		s1, addr1 := serve(t, storage())
		id := ids.NewNodeID()
		registerNode(t, dial(t, addr1), id, "node-r")
		_ = s1.Close()

		cfg := storage()
		cfg.HealthTimeout = 200 * time.Millisecond
		s2, addr2 := serve(t, cfg)
		waitState(t, s2, "node-r", StateDead, 5*time.Second)
		c := dial(t, addr2)
		// A dead node's heartbeat is refused...
		err := c.Call(context.Background(), rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:]}, &pb.ClusterView{})
		if !IsFenced(err) || !strings.Contains(err.Error(), id.Name()) || !strings.Contains(err.Error(), "no heartbeat") {
			t.Fatalf("heartbeat of the dead node: %v, want the fencing error naming it and why", err)
		}
		// ...and so is its registration.
		err = c.Call(context.Background(), rpc.MRegisterNode, &pb.NodeInfo{NodeId: id[:], Address: "node-r"}, &pb.Status{})
		if !IsFenced(err) {
			t.Fatalf("registration of the dead node: %v, want the fencing error", err)
		}
		if st := state(s2, "node-r"); st != StateDead {
			t.Fatalf("fenced node is %s", st)
		}
		_ = s2.Close()

		// The death was written: a third server loads it dead, and still
		// refuses it.
		s3, addr3 := serve(t, storage())
		if st := state(s3, "node-r"); st != StateDead {
			t.Fatalf("node loaded after its death: %s", st)
		}
		err = dial(t, addr3).Call(context.Background(), rpc.MRegisterNode, &pb.NodeInfo{NodeId: id[:], Address: "node-r"}, &pb.Status{})
		if !IsFenced(err) || !strings.Contains(err.Error(), "last heard from at") {
			t.Fatalf("registration after a restart: %v, want the fencing error", err)
		}
	})
}

func TestBinaryUpload(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		s, addr := serve(t, storage())
		c := dial(t, addr)
		exe := randomBytes(t, 50_000)
		hash := sha(exe)

		// A chunk set whose bytes do not match the hash is discarded.
		bad := chunks(hash, bytes.Clone(exe), 20_000, []int{2, 1, 0})
		bad[1].Data = bytes.Clone(bad[1].Data)
		bad[1].Data[7] ^= 1
		errs := putChunks(t, c, bad)
		if errs[0] != "" || errs[1] != "" || !strings.Contains(errs[2], "hash to") {
			t.Fatalf("corrupted upload: %q", errs)
		}
		st := &pb.Status{}
		call(t, c, rpc.MGetBinary, &pb.GetBinary{Hash: hash}, st)
		if st.Error != "binary "+hash+" not stored" {
			t.Fatalf("after a corrupted upload: %q", st.Error)
		}

		// Overlapping and repeated chunks are fine.
		all := chunks(hash, exe, 20_000, nil)
		overlap := &pb.BinaryChunk{Hash: hash, Offset: 15_000, Data: exe[15_000:45_000], Size: int64(len(exe))}
		for i, e := range putChunks(t, c, []*pb.BinaryChunk{all[0], all[0], overlap, all[2]}) {
			if e != "" {
				t.Fatalf("chunk %d: %s", i, e)
			}
		}
		call(t, c, rpc.MGetBinary, &pb.GetBinary{Hash: hash}, st)
		if st.Error != "" {
			t.Fatalf("after the upload: %q", st.Error)
		}
		// A second upload of a stored binary is a no-op.
		if errs := putChunks(t, c, all[:1]); errs[0] != "" {
			t.Fatal(errs[0])
		}
		// Replies are clipped to the end.
		b, err := c.CallRaw(context.Background(), rpc.MGetBinary, &pb.GetBinary{Hash: hash, Offset: 49_000, Length: 5000})
		if err != nil || !bytes.Equal(b, exe[49_000:]) {
			t.Fatalf("tail: %d bytes, %v", len(b), err)
		}
		if got := download(t, c, hash, int64(len(exe)), 7777); !bytes.Equal(got, exe) {
			t.Fatal("download differs")
		}

		// Bad chunks are refused.
		for _, ch := range []*pb.BinaryChunk{
			{Hash: "abc", Size: 1, Data: []byte{1}},
			{Hash: sha([]byte("x")), Size: 1, Offset: 1, Data: []byte{1}},
			{Hash: sha([]byte("x")), Size: -1},
			{Hash: sha([]byte("x")), Size: MaxBinarySize + 1},
		} {
			if errs := putChunks(t, c, []*pb.BinaryChunk{ch}); errs[0] == "" {
				t.Fatalf("chunk %v accepted", ch)
			}
		}
		// An empty executable is an executable too.
		if errs := putChunks(t, c, []*pb.BinaryChunk{{Hash: sha(nil)}}); errs[0] != "" {
			t.Fatal(errs[0])
		}
		_ = s
	})
}

func TestGetBinaryErrors(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	unknown := sha([]byte("never uploaded"))
	st := &pb.Status{}
	call(t, c, rpc.MGetBinary, &pb.GetBinary{Hash: unknown}, st)
	if st.Error != "binary "+unknown+" not stored" {
		t.Fatalf("length 0: %q", st.Error)
	}
	_, err := c.CallRaw(context.Background(), rpc.MGetBinary, &pb.GetBinary{Hash: unknown, Length: 10})
	if !strings.Contains(remoteErr(err), "not stored") {
		t.Fatalf("unknown hash: %v", err)
	}
	exe := []byte("tiny executable")
	putChunks(t, c, chunks(sha(exe), exe, 100, nil))
	for _, g := range []*pb.GetBinary{
		{Hash: sha(exe), Offset: int64(len(exe)), Length: 1},
		{Hash: sha(exe), Offset: -1, Length: 1},
		{Hash: sha(exe), Offset: 0, Length: -5},
	} {
		if _, err := c.CallRaw(context.Background(), rpc.MGetBinary, g); remoteErr(err) == "" {
			t.Fatalf("%v: %v", g, err)
		}
	}
	// A job needs a stored executable.
	call(t, c, rpc.MJobStarted, &pb.JobInfo{JobId: "j", ExeHash: unknown}, st)
	if !strings.Contains(st.Error, "not stored") {
		t.Fatalf("job with an unknown binary: %q", st.Error)
	}
	call(t, c, rpc.MJobStarted, &pb.JobInfo{ExeHash: sha(exe)}, st)
	if st.Error == "" {
		t.Fatal("job without an ID accepted")
	}
}

func TestLargeBinaryChunksCapped(t *testing.T) {
	_, addr := serve(t, Config{})
	c := dial(t, addr)
	exe := randomBytes(t, MaxBinaryChunk+1000)
	hash := sha(exe)
	for _, e := range putChunks(t, c, chunks(hash, exe, 4<<20, nil)) {
		if e != "" {
			t.Fatal(e)
		}
	}
	b, err := c.CallRaw(context.Background(), rpc.MGetBinary, &pb.GetBinary{Hash: hash, Length: int64(len(exe))})
	if err != nil || len(b) != MaxBinaryChunk || !bytes.Equal(b, exe[:MaxBinaryChunk]) {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
}

func TestPartialUploadsBounded(t *testing.T) {
	s, addr := serve(t, Config{})
	c := dial(t, addr)
	type upload struct {
		hash string
		all  []*pb.BinaryChunk
	}
	var ups []upload
	for i := 0; i <= maxPartials; i++ {
		exe := randomBytes(t, 2000)
		u := upload{sha(exe), chunks(sha(exe), exe, 1000, nil)}
		putChunks(t, c, u.all[:1])
		ups = append(ups, u)
	}
	s.mu.Lock()
	n := len(s.partials)
	s.mu.Unlock()
	if n != maxPartials {
		t.Fatalf("%d partial uploads kept, want %d", n, maxPartials)
	}
	// The oldest was dropped: its second half alone completes nothing.
	putChunks(t, c, ups[0].all[1:])
	st := &pb.Status{}
	call(t, c, rpc.MGetBinary, &pb.GetBinary{Hash: ups[0].hash}, st)
	if st.Error == "" {
		t.Fatal("a dropped upload was completed")
	}
	// The newest completes.
	putChunks(t, c, ups[maxPartials].all[1:])
	call(t, c, rpc.MGetBinary, &pb.GetBinary{Hash: ups[maxPartials].hash}, st)
	if st.Error != "" {
		t.Fatal(st.Error)
	}
}

func TestKV(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		_, addr := serve(t, storage())
		c := dial(t, addr)
		r := &pb.KVReply{}
		put := func(ns, key, val string, overwrite bool) bool {
			call(t, c, rpc.MKVPut, &pb.KVEntry{Namespace: ns, Key: key, Value: []byte(val), Overwrite: overwrite}, r)
			if r.Error != "" {
				t.Fatal(r.Error)
			}
			return r.Found
		}
		get := func(ns, key string) (string, bool) {
			call(t, c, rpc.MKVGet, &pb.KVEntry{Namespace: ns, Key: key}, r)
			return string(r.Value), r.Found
		}
		if put("ns", "k", "v1", false) {
			t.Fatal("a new key was found")
		}
		if !put("ns", "k", "v2", false) {
			t.Fatal("an existing key was not found")
		}
		if v, _ := get("ns", "k"); v != "v1" {
			t.Fatalf("overwrite=false replaced the value: %q", v)
		}
		if !put("ns", "k", "v3", true) {
			t.Fatal("an existing key was not found")
		}
		if v, ok := get("ns", "k"); v != "v3" || !ok {
			t.Fatalf("overwrite=true: %q %v", v, ok)
		}
		if _, ok := get("other", "k"); ok {
			t.Fatal("namespaces are not apart")
		}
		put("ns", "empty", "", false)
		if v, ok := get("ns", "empty"); v != "" || !ok {
			t.Fatalf("empty value: %q %v", v, ok)
		}
		put("ns", "k/2", "x", false)
		put("ns", "j", "x", false)
		put("other", "k/3", "x", false)
		call(t, c, rpc.MKVKeys, &pb.KVEntry{Namespace: "ns", Key: "k"}, r)
		if !slices.Equal(r.Keys, []string{"k", "k/2"}) {
			t.Fatalf("keys with prefix k: %v", r.Keys)
		}
		call(t, c, rpc.MKVDel, &pb.KVEntry{Namespace: "ns", Key: "k"}, r)
		if !r.Found {
			t.Fatal("delete did not find the key")
		}
		call(t, c, rpc.MKVDel, &pb.KVEntry{Namespace: "ns", Key: "k"}, r)
		if r.Found {
			t.Fatal("second delete found the key")
		}
		if _, ok := get("ns", "k"); ok {
			t.Fatal("deleted key found")
		}
	})
}

func TestJobsAndHeartbeatView(t *testing.T) {
	var clock atomic.Int64
	clock.Store(1_000_000)
	now := func() time.Time { return time.UnixMilli(clock.Add(1000)) }
	s, addr := serve(t, Config{Now: now})
	c := dial(t, addr)
	id := ids.NewNodeID()
	registerNode(t, c, id, "node-h")
	exe := []byte("an executable")
	putChunks(t, c, chunks(sha(exe), exe, 5, []int{2, 0, 1}))
	st := &pb.Status{}
	for _, j := range []string{"job-b", "job-a", "job-c"} {
		call(t, c, rpc.MJobStarted, &pb.JobInfo{JobId: j, ExeHash: sha(exe)}, st)
		if st.Error != "" {
			t.Fatal(st.Error)
		}
	}
	if err := c.Notify(rpc.MJobEnded, &pb.JobRequest{JobId: "job-a", Status: JobSucceeded}); err != nil {
		t.Fatal(err)
	}
	view := &pb.ClusterView{}
	call(t, c, rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:]}, view)
	if !slices.Equal(view.EndedJobs, []string{"job-a"}) {
		t.Fatalf("ended jobs: %v", view.EndedJobs)
	}
	if len(view.Nodes) != 1 || view.Nodes[0].Address != "node-h" {
		t.Fatalf("view nodes: %v", view.Nodes)
	}
	// A heartbeat may still come as a notification.
	if err := c.Notify(rpc.MHeartbeat, &pb.Heartbeat{NodeId: id[:]}); err != nil {
		t.Fatal(err)
	}
	info := &pb.JobInfo{}
	call(t, c, rpc.MGetJob, &pb.JobRequest{JobId: "job-a"}, info)
	if info.State != JobSucceeded || info.EndUnixMs <= info.StartUnixMs {
		t.Fatalf("ended job: %v", info)
	}
	list := &pb.JobList{}
	call(t, c, rpc.MListJobs, &pb.Empty{}, list)
	var order []string
	for _, j := range list.Jobs {
		order = append(order, j.JobId)
	}
	if !slices.Equal(order, []string{"job-b", "job-a", "job-c"}) {
		t.Fatalf("jobs by start time: %v", order)
	}
	if got := s.Jobs(); len(got) != 3 || got[0].JobId != "job-b" {
		t.Fatalf("Jobs: %v", got)
	}
	err := c.Call(context.Background(), rpc.MGetJob, &pb.JobRequest{JobId: "nope"}, info)
	if remoteErr(err) != "gcs: unknown job nope" {
		t.Fatalf("unknown job: %v", err)
	}
}

func TestUnreachableRedis(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redisAddr := dead.Addr().String()
	_ = dead.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err := Serve(ln, Config{RedisAddress: redisAddr})
	took := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatal("served without its Redis")
	}
	if !strings.Contains(err.Error(), "redis at "+redisAddr) || took > 5*time.Second {
		t.Fatalf("after %v: %v", took, err)
	}
	if _, aerr := ln.Accept(); aerr == nil {
		t.Fatal("the listener was left open")
	}
	t.Logf("after %v: %v", took, err)

	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(ln2, Config{RedisAddress: "x", Store: NewMemoryStore()}); !errors.Is(err, ErrStoreConfig) {
		t.Fatalf("two stores: %v", err)
	}
}

func TestRedisPrefixesKeepClustersApart(t *testing.T) {
	addr := redistest.Start(t)
	_, a1 := serve(t, Config{RedisAddress: addr, RedisPrefix: "one:"})
	_, a2 := serve(t, Config{RedisAddress: addr, RedisPrefix: "two:"})
	r := &pb.KVReply{}
	call(t, dial(t, a1), rpc.MKVPut, &pb.KVEntry{Key: "k", Value: []byte("1")}, r)
	call(t, dial(t, a2), rpc.MKVGet, &pb.KVEntry{Key: "k"}, r)
	if r.Found {
		t.Fatal("a key of one cluster is seen by the other")
	}
	st, err := DialRedis(context.Background(), addr, "", "one:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.List(context.Background(), TableKV)
	if err != nil || len(all) != 1 {
		t.Fatalf("one:kv: %v, %v", all, err)
	}
}

// TestMalformedFrames sends each method a body that is no protobuf: it
// gets an error reply, and the server goes on.
func TestMalformedFrames(t *testing.T) {
	_, addr := serve(t, Config{})
	rc := dialRaw(t, addr)
	methods := []rpc.Method{
		rpc.MRegisterNode, rpc.MHeartbeat, rpc.MRegisterActorName, rpc.MLookupActorName,
		rpc.MActorAlive, rpc.MActorGone, rpc.MPutBinary, rpc.MGetBinary, rpc.MJobStarted,
		rpc.MJobEnded, rpc.MGetJob, rpc.MKVPut, rpc.MKVGet, rpc.MKVDel, rpc.MKVKeys,
	}
	for i, m := range methods {
		kind, body := rc.request(t, m, uint64(100+i), []byte{0xff})
		if kind != rpc.KindError || !strings.Contains(string(body), "malformed") {
			t.Fatalf("method %d: kind %d, %q", m, kind, body)
		}
	}
	if kind, _ := rc.request(t, rpc.MListNodes, 1000, nil); kind != rpc.KindReply {
		t.Fatalf("after the malformed frames: kind %d", kind)
	}
}

// TestCloseStopsRedisClient: no goroutine of the Redis client outlives
// Close.
func TestCloseStopsRedisClient(t *testing.T) {
	addr := redistest.Start(t)
	s, a := serve(t, Config{RedisAddress: addr})
	r := &pb.KVReply{}
	call(t, dial(t, a), rpc.MKVPut, &pb.KVEntry{Key: "k", Value: []byte("1")}, r)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "go-redis") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis client goroutines left after Close:\n%s", stacks)
		}
		time.Sleep(10 * time.Millisecond) // goroutines end on their own
	}
}

// The control store keeps the newest maxFinishedJobs finished jobs and,
// of the executables no running job uses, the keepUnusedBinaries used
// last; in memory and in its store alike.
func TestFinishedJobsAndUnusedBinariesAreBounded(t *testing.T) {
	backends(t, func(t *testing.T, storage func() Config) {
		var clock atomic.Int64
		clock.Store(1_000_000_000)
		cfg := storage()
		cfg.Now = func() time.Time { return time.UnixMilli(clock.Load()) }
		s, addr := serve(t, cfg)
		c := dial(t, addr)
		st := &pb.Status{}
		// Eight programs, one job each, a second apart; the first runs
		// again meanwhile and is still running.
		var hashes []string
		for i := range 8 {
			exe := []byte(fmt.Sprintf("executable %d", i))
			hashes = append(hashes, sha(exe))
			putChunks(t, c, chunks(sha(exe), exe, 8, nil))
			startJobOf(t, c, fmt.Sprintf("job-%d", i), sha(exe))
			clock.Add(1000)
			endJob(t, c, fmt.Sprintf("job-%d", i))
		}
		startJobOf(t, c, "running", hashes[0])
		// Much later, one more run of the last program ends: of the six
		// programs neither running nor just used, the four used last stay.
		clock.Add(int64(10 * time.Minute / time.Millisecond))
		startJobOf(t, c, "last", hashes[7])
		endJob(t, c, "last")
		for i, want := range []bool{true, false, false, true, true, true, true, true} {
			if got := binaryStored(t, c, hashes[i]); got != want {
				t.Errorf("program %d stored: %v, want %v", i, got, want)
			}
		}
		// Past maxFinishedJobs finished jobs, the oldest go.
		for i := range maxFinishedJobs {
			clock.Add(1)
			startJobOf(t, c, fmt.Sprintf("batch-%d", i), hashes[7])
			endJob(t, c, fmt.Sprintf("batch-%d", i))
		}
		jobs := jobStates(t, c)
		if len(jobs) != maxFinishedJobs+1 || jobs["running"] != JobRunning || jobs["batch-0"] != JobSucceeded || jobs["last"] != "" || jobs["job-7"] != "" {
			t.Fatalf("%d jobs kept (running %q, batch-0 %q, last %q, job-7 %q), want the running one and the %d newest finished",
				len(jobs), jobs["running"], jobs["batch-0"], jobs["last"], jobs["job-7"], maxFinishedJobs)
		}
		// A control store started again on the same storage has the same.
		_ = s.Close()
		cfg2 := storage()
		cfg2.Now = cfg.Now
		_, addr2 := serve(t, cfg2)
		c2 := dial(t, addr2)
		if again := jobStates(t, c2); len(again) != len(jobs) || again["job-0"] != "" || again["running"] != JobRunning {
			t.Fatalf("after a restart: %d jobs (job-0 %q, running %q)", len(again), again["job-0"], again["running"])
		}
		call(t, c2, rpc.MGetBinary, &pb.GetBinary{Hash: hashes[1]}, st)
		if st.Error == "" {
			t.Fatal("a dropped executable came back after a restart")
		}
	})
}

// startJobOf starts job, which runs the executable of the given hash, through c.
func startJobOf(t *testing.T, c *rpc.Conn, job, hash string) {
	t.Helper()
	st := &pb.Status{}
	call(t, c, rpc.MJobStarted, &pb.JobInfo{JobId: job, ExeHash: hash}, st)
	if st.Error != "" {
		t.Fatal(st.Error)
	}
}

// endJob tells the control store through c that job succeeded.
func endJob(t *testing.T, c *rpc.Conn, job string) {
	t.Helper()
	if err := c.Notify(rpc.MJobEnded, &pb.JobRequest{JobId: job, Status: JobSucceeded}); err != nil {
		t.Fatal(err)
	}
}

// binaryStored reports whether the control store behind c has the
// executable of the given hash.
func binaryStored(t *testing.T, c *rpc.Conn, hash string) bool {
	t.Helper()
	st := &pb.Status{}
	call(t, c, rpc.MGetBinary, &pb.GetBinary{Hash: hash}, st)
	return st.Error == ""
}

// jobStates lists the jobs the control store behind c keeps, by ID, with their states.
func jobStates(t *testing.T, c *rpc.Conn) map[string]string {
	t.Helper()
	l := &pb.JobList{}
	call(t, c, rpc.MListJobs, &pb.Empty{}, l)
	out := map[string]string{}
	for _, j := range l.Jobs {
		out[j.JobId] = j.State
	}
	return out
}
