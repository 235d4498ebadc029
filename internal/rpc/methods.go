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
	MHeartbeat                           // raylet -> control store (notify): Heartbeat
	MListNodes                           // any -> control store: Empty -> NodeList
	MRegisterJob                         // driver -> raylet: JobInfo -> Status
	MActorAlive                          // owner -> raylet (control store), notify: ActorName with actor_id and worker_addr
	MLog                                 // raylet -> driver (notify): LogLines, worker output
	MJobDone                             // driver -> raylet: Empty -> Empty, once its workers' output is passed on
)
