package testcluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/placement"
	"github.com/rayo-dev/rayo/internal/redistest"
	"github.com/rayo-dev/rayo/internal/rpc"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// TestControlStoreSurvivesRedisDataLoss: Redis restarts empty under a
// running cluster; the control store writes its whole state back; then
// the control store process is SIGKILLed, and the one the head starts
// again finds everything: both nodes, the jobs, the KV entry, the named
// detached actor (which counts on) and the detached placement group.
func TestControlStoreSurvivesRedisDataLoss(t *testing.T) {
	redis := redistest.StartServer(t)
	rayo := Build(t, "./cmd/rayo")
	driver := Build(t, "./internal/testcluster/testdata/mn")
	c := Start(t, rayo, 2, "--redis-address", redis.Addr)
	other := c.AddNode(2)
	nodes, err := c.ListNodes()
	if err != nil {
		t.Fatal(err)
	}
	want := aliveIDs(nodes)

	kv := &pb.KVReply{}
	gcsCall(t, c, rpc.MKVPut, &pb.KVEntry{Namespace: "loss", Key: "greeting", Value: []byte("hello"), Overwrite: true}, kv)
	run(t, c.Head, driver, "pg-leave")                                                        // a detached group "kept"
	if out := run(t, c.Head, driver, "outage", t.TempDir(), "0"); out["actor_before"] == "" { // the detached actor "survivor"
		t.Fatalf("outage driver: %v", out)
	}
	before := &pb.JobList{}
	gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, before)
	if len(before.Jobs) != 2 {
		t.Fatalf("jobs before the loss: %v", before.Jobs)
	}

	redis.Restart(t)
	// The control store notices within a second or two and writes back.
	ctx := context.Background()
	st, err := gcs.DialRedis(ctx, redis.Addr, "", gcs.DefaultRedisPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	started := time.Now()
	deadline := started.Add(30 * time.Second)
	for {
		counts := map[string]int{}
		for _, table := range []string{gcs.TableNodes, gcs.TableJobs, gcs.TableNames, gcs.TableKV, gcs.TablePlacementGroups, gcs.TableBinaries, "tls"} {
			recs, _ := st.List(ctx, table)
			counts[table] = len(recs)
		}
		if counts[gcs.TableNodes] == 2 && counts[gcs.TableJobs] == 2 && counts[gcs.TableNames] == 1 && counts[gcs.TableKV] == 1 &&
			counts[gcs.TablePlacementGroups] >= 1 && counts[gcs.TableBinaries] >= 1 && counts["tls"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control store did not write its state back within 30s: %v", counts)
		}
		time.Sleep(50 * time.Millisecond) // polling Redis
	}
	t.Logf("state written back %v after Redis restarted empty", time.Since(started).Round(time.Millisecond))

	killGCS(t, c, want)

	after := &pb.JobList{}
	gcsCall(t, c, rpc.MListJobs, &pb.Empty{}, after)
	if len(after.Jobs) != 2 {
		t.Fatalf("jobs after the loss and the restart: %v, before: %v", after.Jobs, before.Jobs)
	}
	kv = &pb.KVReply{}
	gcsCall(t, c, rpc.MKVGet, &pb.KVEntry{Namespace: "loss", Key: "greeting"}, kv)
	if !kv.Found || string(kv.Value) != "hello" {
		t.Fatalf("KV after the loss and the restart: %+v", kv)
	}
	pg := &pb.PlacementGroupReply{}
	gcsCall(t, c, rpc.MPlacementGroup, &pb.PlacementGroupRequest{Op: placement.OpGet, Name: "kept"}, pg)
	if pg.Error != "" || len(pg.Groups) != 1 || pg.Groups[0].State != placement.StateCreated {
		t.Fatalf("the detached placement group after the loss and the restart: %+v", pg)
	}
	out := run(t, other, driver, "outage-check")
	if !strings.HasPrefix(out["actor_after"], "2@") {
		t.Fatalf("the detached actor after the loss and the restart: %q (want its second count)", out["actor_after"])
	}
}
