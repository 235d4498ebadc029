package rpc

// The methods of rayo's protocol. Requests to a raylet, to a worker and to
// an owner share one numbering so a frame is never ambiguous.
const (
	MRegisterWorker    Method = iota + 1 // worker -> raylet: RegisterWorker -> RegisterWorkerReply
	MRequestLease                        // owner -> raylet: RequestLease -> LeaseReply
	MReturnLease                         // owner -> raylet (notify): ReturnLease
	MBlocked                             // worker -> raylet (notify): BlockedChange
	MCreateObject                        // any -> raylet: CreateObject -> CreateObjectReply
	MSealObjects                         // any -> raylet (notify): ObjectIDs
	MFreeObjects                         // owner -> raylet (notify): ObjectIDs
	MPushTask                            // owner -> worker: TaskSpec -> TaskReply
	MGetObject                           // borrower -> owner: GetObject -> Locator
	MReleaseBorrowed                     // borrower -> owner (notify): ObjectIDs
	MCancelTask                          // owner -> worker (notify): ObjectIDs with the task id
	MRegisterActorName                   // any -> raylet (control store): ActorName -> ActorNameReply
	MLookupActorName                     // any -> raylet (control store): ActorName -> ActorNameReply
	MGetActorAddr                        // caller -> actor's owner: ActorAddrRequest -> ActorAddr
	MKillActor                           // caller -> actor's worker (notify): ActorAddrRequest
	MKillOwnedActor                      // caller -> actor's owner (notify): ActorAddrRequest; no restart
	MRegisterNode                        // raylet -> control store: NodeInfo -> Status
	MHeartbeat                           // raylet -> control store: Heartbeat -> ClusterView
	MListNodes                           // any -> control store: Empty -> NodeList
	MRegisterJob                         // driver -> raylet: JobInfo -> Status
	MActorAlive                          // owner -> raylet (control store), notify: ActorName with actor_id and worker_addr
	MLog                                 // raylet -> driver (notify): LogLines, worker output
	MJobDone                             // driver -> raylet: Empty -> Empty, once its workers' output is passed on
	MJobStarted                          // raylet -> control store: JobInfo -> Status
	MJobEnded                            // raylet -> control store (notify): JobRequest
	MGetJob                              // raylet -> control store: JobRequest -> JobInfo
	MListJobs                            // any -> control store: Empty -> JobList
	MPutBinary                           // raylet -> control store: BinaryChunk -> Status
	MGetBinary                           // raylet -> control store: GetBinary -> raw bytes (length 0: Status)
	MPullObject                          // worker/driver -> raylet: PullObject -> CreateObjectReply
	MReadChunk                           // raylet -> raylet: ReadChunk -> raw bytes
	MKVPut                               // any -> control store: KVEntry -> KVReply (found: it existed)
	MKVGet                               // any -> control store: KVEntry -> KVReply
	MKVDel                               // any -> control store: KVEntry -> KVReply
	MKVKeys                              // any -> control store: KVEntry (key = prefix) -> KVReply
	MActorGone                           // raylet -> control store (notify): ActorName with actor_id; its name is free
	MReportEvents                        // owner/worker -> raylet, raylet -> control store (notify): StateEvents
	MListTasks                           // any -> raylet or control store: StateQuery -> StateList (tasks)
	MListActors                          // any -> raylet or control store: StateQuery -> StateList (actors)
	MNodeStats                           // any -> raylet: Empty -> NodeStats
	MListObjects                         // any -> raylet (its store) or owner (what it owns): Empty -> ObjectList
	MReadLog                             // any -> raylet: LogRequest -> raw bytes of the log
	MPublishView                         // control store -> raylet (notify): ClusterView, pushed when nodes or jobs change
	MNodesDead                           // raylet -> owners (notify): NodeList of nodes declared dead
	MPlacementGroup                      // any -> raylet (control store): PlacementGroupRequest -> PlacementGroupReply
	MBundles                             // control store -> raylet: BundleOp -> Status
	MDrainWorker                         // raylet -> worker: Empty -> StateEvents, what it has not reported yet; it is stopped next
	MPinObject                           // worker/driver -> raylet: CreateObject (object_id) -> CreateObjectReply, restoring a spilled object
	MUnpinObjects                        // worker/driver -> raylet (notify): ObjectIDs
	MWorkerOOM                           // raylet -> lease owner: WorkerKilled -> Empty, before the memory monitor kills the worker
)
