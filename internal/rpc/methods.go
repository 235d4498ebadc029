package rpc

import (
	"fmt"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
)

// The methods of rayo's protocol. Requests to a raylet, to a worker and to
// an owner share one numbering so a frame is never ambiguous. The table
// below gives each its request and reply types.
const (
	MRegisterWorker    Method = iota + 1 // worker -> raylet
	MRequestLease                        // owner -> raylet
	MReturnLease                         // owner -> raylet (notify)
	MBlocked                             // worker -> raylet (notify)
	MCreateObject                        // any -> raylet
	MSealObjects                         // any -> raylet (notify)
	MFreeObjects                         // owner -> raylet (notify)
	MPushTask                            // owner -> worker
	MGetObject                           // borrower -> owner
	MReleaseBorrowed                     // borrower -> owner (notify)
	MCancelTask                          // owner -> worker (notify): the task id first
	MRegisterActorName                   // any -> raylet (control store)
	MLookupActorName                     // any -> raylet (control store)
	MGetActorAddr                        // caller -> actor's owner
	MKillActor                           // caller -> actor's worker (notify)
	MKillOwnedActor                      // caller -> actor's owner (notify); no restart
	MRegisterNode                        // raylet -> control store
	MHeartbeat                           // raylet -> control store (a notification between views)
	MListNodes                           // any -> control store
	MRegisterJob                         // driver -> raylet
	MActorAlive                          // owner -> raylet (control store), notify: with actor_id and worker_addr
	MLog                                 // raylet -> driver (notify): worker output
	MJobDone                             // driver -> raylet, once its workers' output is passed on
	MJobStarted                          // raylet -> control store
	MJobEnded                            // raylet -> control store (notify)
	MGetJob                              // raylet -> control store
	MListJobs                            // any -> control store
	MPutBinary                           // raylet -> control store
	MGetBinary                           // raylet -> control store: raw bytes (length 0: a Status)
	MPullObject                          // worker/driver -> raylet
	MReadChunk                           // raylet -> raylet: raw bytes
	MKVPut                               // any -> control store (found: it existed)
	MKVGet                               // any -> control store
	MKVDel                               // any -> control store
	MKVKeys                              // any -> control store (key = prefix)
	MActorGone                           // raylet -> control store (notify): its name is free
	MReportEvents                        // owner/worker -> raylet, raylet -> control store (notify)
	MListTasks                           // any -> raylet or control store
	MListActors                          // any -> raylet or control store
	MNodeStats                           // any -> raylet
	MListObjects                         // any -> raylet (its store) or owner (what it owns)
	MReadLog                             // any -> raylet: raw bytes of the log
	MPublishView                         // control store -> raylet (notify), when nodes or jobs change
	MNodesDead                           // raylet -> owners (notify): nodes declared dead
	MPlacementGroup                      // any -> raylet (control store)
	MBundles                             // control store -> raylet
	MDrainWorker                         // raylet -> worker: what it has not reported yet; it is stopped next
	MPinObject                           // worker/driver -> raylet: restoring a spilled object
	MUnpinObjects                        // worker/driver -> raylet (notify)
	MWorkerOOM                           // raylet -> lease owner, before the memory monitor kills the worker
	MDrainNode                           // any -> control store (rayo drain): the node's record, DRAINING
	MTakeObject                          // raylet -> raylet: a draining node hands over a primary copy
	MObjectsMoved                        // raylet -> owner: where a drained node's objects went
	MFlushOutput                         // worker -> raylet: once what it printed so far has been shown
)

// The methods with their types: a Mux takes these, so a handler of the
// wrong type does not compile. The last argument bounds a request's body
// (0: MaxFrame); the messages made of a few IDs take small ones.
var (
	RegisterWorker    = request[pb.RegisterWorker, pb.RegisterWorkerReply](MRegisterWorker, "RegisterWorker", smallBody)
	RequestLease      = request[pb.RequestLease, pb.LeaseReply](MRequestLease, "RequestLease", 0)
	ReturnLease       = notice[pb.ReturnLease](MReturnLease, "ReturnLease", smallBody)
	Blocked           = notice[pb.BlockedChange](MBlocked, "Blocked", smallBody)
	CreateObject      = request[pb.CreateObject, pb.CreateObjectReply](MCreateObject, "CreateObject", smallBody)
	SealObjects       = notice[pb.ObjectIDs](MSealObjects, "SealObjects", 0)
	FreeObjects       = notice[pb.ObjectIDs](MFreeObjects, "FreeObjects", 0)
	PushTask          = request[pb.TaskSpec, pb.TaskReply](MPushTask, "PushTask", 0)
	GetObject         = request[pb.GetObject, pb.Locator](MGetObject, "GetObject", smallBody)
	ReleaseBorrowed   = notice[pb.ObjectIDs](MReleaseBorrowed, "ReleaseBorrowed", 0)
	CancelTask        = notice[pb.ObjectIDs](MCancelTask, "CancelTask", 0)
	RegisterActorName = request[pb.ActorName, pb.ActorNameReply](MRegisterActorName, "RegisterActorName", smallBody)
	LookupActorName   = request[pb.ActorName, pb.ActorNameReply](MLookupActorName, "LookupActorName", smallBody)
	GetActorAddr      = request[pb.ActorAddrRequest, pb.ActorAddr](MGetActorAddr, "GetActorAddr", smallBody)
	KillActor         = notice[pb.ActorAddrRequest](MKillActor, "KillActor", smallBody)
	KillOwnedActor    = notice[pb.ActorAddrRequest](MKillOwnedActor, "KillOwnedActor", smallBody)
	RegisterNode      = request[pb.NodeInfo, pb.Status](MRegisterNode, "RegisterNode", 0)
	Heartbeat         = request[pb.Heartbeat, pb.ClusterView](MHeartbeat, "Heartbeat", 0)
	ListNodes         = request[pb.Empty, pb.NodeList](MListNodes, "ListNodes", smallBody)
	RegisterJob       = request[pb.JobInfo, pb.Status](MRegisterJob, "RegisterJob", 0)
	ActorAlive        = notice[pb.ActorName](MActorAlive, "ActorAlive", smallBody)
	Log               = notice[pb.LogLines](MLog, "Log", 0)
	JobDone           = request[pb.Empty, pb.Empty](MJobDone, "JobDone", smallBody)
	JobStarted        = request[pb.JobInfo, pb.Status](MJobStarted, "JobStarted", 0)
	JobEnded          = notice[pb.JobRequest](MJobEnded, "JobEnded", smallBody)
	GetJob            = request[pb.JobRequest, pb.JobInfo](MGetJob, "GetJob", smallBody)
	ListJobs          = request[pb.Empty, pb.JobList](MListJobs, "ListJobs", smallBody)
	PutBinary         = request[pb.BinaryChunk, pb.Status](MPutBinary, "PutBinary", 0)
	GetBinary         = rawRequest[pb.GetBinary](MGetBinary, "GetBinary", smallBody)
	PullObject        = request[pb.PullObject, pb.CreateObjectReply](MPullObject, "PullObject", smallBody)
	ReadChunk         = rawRequest[pb.ReadChunk](MReadChunk, "ReadChunk", smallBody)
	KVPut             = request[pb.KVEntry, pb.KVReply](MKVPut, "KVPut", 0)
	KVGet             = request[pb.KVEntry, pb.KVReply](MKVGet, "KVGet", 0)
	KVDel             = request[pb.KVEntry, pb.KVReply](MKVDel, "KVDel", 0)
	KVKeys            = request[pb.KVEntry, pb.KVReply](MKVKeys, "KVKeys", 0)
	ActorGone         = notice[pb.ActorName](MActorGone, "ActorGone", smallBody)
	ReportEvents      = notice[pb.StateEvents](MReportEvents, "ReportEvents", 0)
	ListTasks         = request[pb.StateQuery, pb.StateList](MListTasks, "ListTasks", smallBody)
	ListActors        = request[pb.StateQuery, pb.StateList](MListActors, "ListActors", smallBody)
	NodeStats         = request[pb.Empty, pb.NodeStats](MNodeStats, "NodeStats", smallBody)
	ListObjects       = request[pb.Empty, pb.ObjectList](MListObjects, "ListObjects", smallBody)
	ReadLog           = rawRequest[pb.LogRequest](MReadLog, "ReadLog", smallBody)
	PublishView       = notice[pb.ClusterView](MPublishView, "PublishView", 0)
	NodesDead         = notice[pb.NodeList](MNodesDead, "NodesDead", 0)
	PlacementGroup    = request[pb.PlacementGroupRequest, pb.PlacementGroupReply](MPlacementGroup, "PlacementGroup", 0)
	Bundles           = request[pb.BundleOp, pb.Status](MBundles, "Bundles", 0)
	DrainWorker       = request[pb.Empty, pb.StateEvents](MDrainWorker, "DrainWorker", smallBody)
	PinObject         = request[pb.CreateObject, pb.CreateObjectReply](MPinObject, "PinObject", smallBody)
	UnpinObjects      = notice[pb.ObjectIDs](MUnpinObjects, "UnpinObjects", 0)
	WorkerOOM         = request[pb.WorkerKilled, pb.Empty](MWorkerOOM, "WorkerOOM", smallBody)
	DrainNode         = request[pb.DrainNode, pb.NodeInfo](MDrainNode, "DrainNode", smallBody)
	TakeObject        = request[pb.PullObject, pb.CreateObjectReply](MTakeObject, "TakeObject", smallBody)
	ObjectsMoved      = request[pb.ObjectsMoved, pb.ObjectIDs](MObjectsMoved, "ObjectsMoved", 0)
	FlushOutput       = request[pb.Empty, pb.Empty](MFlushOutput, "FlushOutput", smallBody)
)

// smallBody bounds the requests made of a few IDs, numbers and names.
const smallBody = 64 << 10

// Request is a method answered with a reply: a request of type Q, a reply
// of type R (both protobuf messages).
type Request[Q, R any] struct{ Method Method }

// RawRequest is a method whose request is of type Q and whose reply is
// bytes that are not a protobuf message (a chunk of an object, of a log).
type RawRequest[Q any] struct{ Method Method }

// Notice is a method that gets no reply: a notification of type Q.
type Notice[Q any] struct{ Method Method }

// methodInfo is what the table says of a method, by number.
type methodInfo struct {
	name  string
	limit int // the largest request body; 0: MaxFrame
	// clusterOnly: the cluster's own method, which daemons call on each
	// other; a peer with a job's credential is refused it.
	clusterOnly bool
}

// clusterMethods are the cluster's own methods: registering nodes and
// workers, heartbeats, the records of jobs starting and ending, job
// executables, raylet-to-raylet object transfer, and what the control
// store and raylets push to each other. A job's credential may not call
// them (a job's process reaches its own raylet over a Unix socket, where
// no credential applies).
var clusterMethods = []Method{
	MRegisterWorker, MRegisterNode, MHeartbeat, MJobStarted, MJobEnded, MPutBinary, MGetBinary,
	MReadChunk, MActorGone, MPublishView, MNodesDead, MBundles, MDrainWorker, MWorkerOOM, MTakeObject,
}

func init() {
	for _, m := range clusterMethods {
		methods[m].clusterOnly = true
	}
}

// ClusterOnly reports whether m is one of the cluster's own methods,
// which a peer holding a job's credential may not call.
func ClusterOnly(m Method) bool { return methods[m].clusterOnly }

// methods is the table, filled as the variables above are initialised.
var methods [256]methodInfo

func request[Q, R any](m Method, name string, limit int) Request[Q, R] {
	methods[m] = methodInfo{name: name, limit: limit}
	return Request[Q, R]{m}
}

func rawRequest[Q any](m Method, name string, limit int) RawRequest[Q] {
	methods[m] = methodInfo{name: name, limit: limit}
	return RawRequest[Q]{m}
}

func notice[Q any](m Method, name string, limit int) Notice[Q] {
	methods[m] = methodInfo{name: name, limit: limit}
	return Notice[Q]{m}
}

// String is the method's name, or its number when it has none.
func (m Method) String() string {
	switch m {
	case MHello:
		return "Hello"
	case MEnroll:
		return "Enroll"
	case MPing:
		return "Ping"
	}
	if n := methods[m].name; n != "" {
		return n
	}
	return fmt.Sprintf("method %d", uint8(m))
}
