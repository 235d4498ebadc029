package dashboard

import (
	"encoding/hex"
	"strings"

	"github.com/rayo-dev/rayo/internal/ids"
	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// A record is one row of a list, as JSON: field name to value. Filters
// compare the text of a top-level field.
type record = map[string]any

// fields are the top-level fields of each resource's records: the keys
// filters may name.
var fields = map[string][]string{
	"nodes": {"node_id", "address", "state", "is_head_node", "resources_total", "resources_available", "cpu_percent",
		"mem_used_bytes", "mem_total_bytes", "object_store_used_bytes", "object_store_capacity_bytes", "object_store_spilled_bytes", "object_store_spilled_objects", "num_workers",
		"session_dir", "death_reason", "metrics_address"},
	"workers": {"worker_id", "node_id", "pid", "job_id", "worker_type", "state", "actor_id", "start_time_ms", "end_time_ms",
		"exit_code", "log_file"},
	"jobs": {"job_id", "status", "message", "entrypoint", "node_id", "driver_address", "start_time_ms", "end_time_ms", "submission_id"},
	"tasks": {"task_id", "attempt_number", "name", "state", "type", "job_id", "actor_id", "parent_task_id", "node_id",
		"worker_id", "worker_pid", "required_resources", "creation_time_ms", "start_time_ms", "end_time_ms", "error_type",
		"error_message", "state_times_ms"},
	"actors": {"actor_id", "class_name", "state", "name", "namespace", "job_id", "node_id", "worker_id", "pid",
		"num_restarts", "death_cause", "death_message", "detached", "required_resources", "start_time_ms", "end_time_ms"},
	"objects": {"object_id", "object_size_bytes", "locations", "location", "owner_address", "reference_count", "kind", "job_id"},
	"placement_groups": {"placement_group_id", "name", "state", "strategy", "bundles", "job_id", "is_detached", "reason",
		"creation_time_ms", "ready_time_ms", "removal_time_ms"},
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func nodeName(id []byte) string {
	if nid, err := ids.NodeIDFrom(id); err == nil {
		return nid.Name()
	}
	return hexOf(id)
}

func resources(list []*pb.Resource) map[string]float64 {
	out := make(map[string]float64, len(list))
	for _, r := range list {
		out[r.Name] += r.Quantity
	}
	return out
}

func ms(ns int64) int64 { return ns / 1e6 }

// nodeRecord is a node with what its raylet said of itself (st may be nil).
func nodeRecord(n *pb.NodeInfo, st *pb.NodeStats) record {
	r := record{
		"node_id": nodeName(n.NodeId), "address": n.Address, "state": n.State, "is_head_node": n.Head,
		"resources_total": resources(n.Resources), "resources_available": resources(n.Available),
		"cpu_percent": 0.0, "mem_used_bytes": int64(0), "mem_total_bytes": int64(0),
		"object_store_used_bytes": int64(0), "object_store_capacity_bytes": int64(0), "num_workers": 0,
		"object_store_spilled_bytes": int64(0), "object_store_spilled_objects": int64(0),
		"session_dir": n.SessionDir, "death_reason": n.DeathReason, "metrics_address": "",
	}
	if st != nil {
		r["cpu_percent"], r["mem_used_bytes"], r["mem_total_bytes"] = st.CpuPercent, st.MemUsed, st.MemTotal
		r["object_store_used_bytes"], r["object_store_capacity_bytes"] = st.StoreUsed, st.StoreCapacity
		r["object_store_spilled_bytes"], r["object_store_spilled_objects"] = st.SpilledBytes, st.SpilledObjects
		r["metrics_address"] = st.MetricsAddr
		live := 0
		for _, w := range st.Workers {
			if w.State != "DEAD" && w.Type != "DRIVER" {
				live++
			}
		}
		r["num_workers"] = live
		if len(st.Available) > 0 {
			r["resources_available"] = resources(st.Available)
		}
	}
	return r
}

func workerRecord(w *pb.WorkerRecord) record {
	return record{
		"worker_id": hexOf(w.WorkerId), "node_id": w.NodeId, "pid": w.Pid, "job_id": w.JobId, "worker_type": w.Type,
		"state": w.State, "actor_id": hexOf(w.ActorId), "start_time_ms": w.StartUnixMs, "end_time_ms": w.EndUnixMs,
		"exit_code": w.ExitCode, "log_file": w.LogFile,
	}
}

func jobRecord(j *pb.JobInfo) record {
	return record{
		"job_id": j.JobId, "status": j.State, "message": j.Message, "entrypoint": strings.TrimSpace(j.Exe + " " + strings.Join(j.Args, " ")),
		"node_id": nodeName(j.NodeId), "driver_address": j.DriverAddr, "start_time_ms": j.StartUnixMs, "end_time_ms": j.EndUnixMs,
		"submission_id": j.SubmissionId,
	}
}

func taskRecord(tr *pb.TaskRecord) record {
	t := tr.Task
	times := make(map[string]int64, len(tr.StateTimesUnixNs))
	for s, v := range tr.StateTimesUnixNs {
		times[s] = ms(v)
	}
	end := times[tasktable.TaskFinished]
	if end == 0 {
		end = times[tasktable.TaskFailed]
	}
	return record{
		"task_id": hexOf(t.TaskId), "attempt_number": t.Attempt, "name": t.Name, "state": t.State, "type": t.Type,
		"job_id": t.JobId, "actor_id": hexOf(t.ActorId), "parent_task_id": hexOf(t.ParentTaskId), "node_id": t.NodeId,
		"worker_id": hexOf(t.WorkerId), "worker_pid": t.WorkerPid, "required_resources": resources(t.Resources),
		"creation_time_ms": times[tasktable.TaskPendingArgs], "start_time_ms": times[tasktable.TaskRunning], "end_time_ms": end,
		"error_type": t.ErrorType, "error_message": t.Error, "state_times_ms": times,
	}
}

func actorRecord(ar *pb.ActorRecord) record {
	a := ar.Actor
	start := ar.StateTimesUnixNs[tasktable.ActorPending]
	if start == 0 {
		start = ar.StateTimesUnixNs[tasktable.ActorAlive]
	}
	return record{
		"actor_id": hexOf(a.ActorId), "class_name": a.ClassName, "state": a.State, "name": a.Name, "namespace": a.Namespace,
		"job_id": a.JobId, "node_id": a.NodeId, "worker_id": hexOf(a.WorkerId), "pid": a.Pid, "num_restarts": a.NumRestarts,
		"death_cause": a.DeathCause, "death_message": a.DeathMessage, "detached": a.Detached, "required_resources": resources(a.Resources),
		"start_time_ms": ms(start), "end_time_ms": ms(ar.StateTimesUnixNs[tasktable.ActorDead]),
	}
}

// placementGroupRecord is a placement group with where each bundle is.
func placementGroupRecord(g *pb.PlacementGroup) record {
	bundles := make([]map[string]any, len(g.Bundles))
	for i, b := range g.Bundles {
		node := ""
		if len(b.NodeId) > 0 {
			node = nodeName(b.NodeId)
		}
		bundles[i] = map[string]any{"bundle_index": i, "resources": resources(b.Resources), "node_id": node}
	}
	return record{
		"placement_group_id": hexOf(g.PlacementGroupId), "name": g.Name, "state": g.State, "strategy": g.Strategy,
		"bundles": bundles, "job_id": g.JobId, "is_detached": g.Detached, "reason": g.Reason,
		"creation_time_ms": g.CreateUnixMs, "ready_time_ms": g.ReadyUnixMs, "removal_time_ms": g.RemoveUnixMs,
	}
}
