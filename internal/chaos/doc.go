// Package chaos is rayo's chaos suite, after Ray's fault-tolerance tests:
// real multi-node clusters on this machine (internal/testcluster) run
// workloads while nodes, workers, the control store and RPCs fail, and
// the suite checks that no work is lost. Its tests print a table at the
// end: scenario, faults injected, work done, work lost (always 0 when the
// suite passes) and time.
//
// `go test ./internal/chaos/` (and so `make test`) runs a short version,
// fewer rounds and smaller workloads; RAYO_CHAOS=full (`make chaos`) runs
// the sizes of the issue that asked for it.
//
// The scenarios:
//
//   - retry accounting: a task with MaxRetries(3) SIGKILLs its own worker
//     three times and succeeds on the 4th attempt; the control store's
//     state history shows 3 FAILED attempts and 1 FINISHED; an error the
//     function returns is not retried, unless RetryExceptions.
//   - RPC faults: with RAYO_TESTING_RPC_FAILURE dropping PushTask requests
//     and replies and RequestLease requests, retriable tasks all succeed
//     and no task with MaxRetries(0) runs twice (an at-most-once effect is
//     never doubled); then, dropping GetObject requests and replies, the
//     driver reads every ref that workers own.
//   - task chaos: nested tasks with MaxRetries(-1) while a random non-head
//     node is killed and started again each round; every result is right.
//   - actor at-least-once: one actor per node, MaxRestarts(-1) and
//     MaxTaskRetries(-1), sequential calls; half are answered, then a
//     node running an actor is killed (the actor's worker dies with it)
//     while the other half wait at the actors. The actor there must
//     restart (restarts > 0, two incarnations on the killed node); no
//     call is missing, counts rise in call order within each
//     incarnation, and an old incarnation never answers after a new one.
//   - lineage: rounds of objects made on a node that is then killed;
//     every task reading them succeeds (the objects are made again, also
//     where a copy of them already is: see TestRebuildWhereACopyIs).
//   - control store: SIGKILLed mid-workload, once per round, with Redis;
//     the workload completes.
//   - partition: on a cluster of its own in network namespaces, a node
//     is cut off (its link down, nobody told) while tasks that prefer it
//     run there. It fences itself after its --gcs-reconnect-timeout (its
//     workers killed, its daemon exits non-zero), the control store
//     declares it DEAD, and its tasks are retried elsewhere; the cut
//     lasts 15 s in the full suite, until the fencing in the short one.
//     Every result is right, some tasks were retried, and no task ran on
//     both sides without a retry counted: each began no more often than
//     the attempts the state API has for it, and none ended on the
//     cut-off side. It is skipped, saying why, where network namespaces
//     cannot be made (not root, no ip command).
package chaos
