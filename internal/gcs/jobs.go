package gcs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/rayo-dev/rayo/internal/rpc/pb"
	"github.com/rayo-dev/rayo/internal/tasktable"
)

// Job states, as the control store knows them (Ray's JobStatus names): a
// job runs, then succeeds (its driver called Shutdown), fails (its driver
// died: killed, crashed, or its submission's entrypoint failed) or is
// stopped (rayo job stop).
const (
	JobRunning   = "RUNNING"
	JobSucceeded = "SUCCEEDED"
	JobFailed    = "FAILED"
	JobStopped   = "STOPPED"
)

// JobOver reports whether a job's state is one it ends in (any but
// RUNNING: FINISHED, from the store of an older control store, too).
func JobOver(state string) bool { return state != JobRunning }

// Limits of the executables the control store keeps.
const (
	// MaxBinarySize is the largest executable it takes (Redis keeps no
	// larger value).
	MaxBinarySize = 512 << 20
	// MaxBinaryChunk is the most bytes one MGetBinary reply carries; a
	// longer request gets this much.
	MaxBinaryChunk = 8 << 20
	// maxPartials is how many uploads may be under way at once; a new one
	// beyond that drops the one that has waited longest for a chunk.
	maxPartials = 8
)

// ErrUnknownJob is a job the control store has not heard of.
var ErrUnknownJob = errors.New("gcs: unknown job")

// ErrNoBinary is an executable the control store does not hold.
var ErrNoBinary = errors.New("gcs: binary not stored")

// partial is an executable being uploaded, its chunks in any order.
type partial struct {
	data []byte
	have []span // the ranges received, sorted and apart
	used uint64 // when it last got a chunk (Server.useSeq)
}

type span struct{ lo, hi int64 }

// add records that [lo, hi) has arrived.
func (p *partial) add(lo, hi int64) {
	if lo >= hi {
		return
	}
	merged := make([]span, 0, len(p.have)+1)
	placed := false
	for _, sp := range p.have {
		switch {
		case sp.hi < lo:
			merged = append(merged, sp)
		case sp.lo > hi:
			if !placed {
				merged = append(merged, span{lo, hi})
				placed = true
			}
			merged = append(merged, sp)
		default: // overlapping or adjacent: absorb it
			lo, hi = min(lo, sp.lo), max(hi, sp.hi)
		}
	}
	if !placed {
		merged = append(merged, span{lo, hi})
	}
	p.have = merged
}

func (p *partial) complete() bool {
	size := int64(len(p.data))
	return size == 0 || (len(p.have) == 1 && p.have[0] == span{0, size})
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func validHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// putBinary takes one chunk of an executable; the last one to arrive
// checks the whole against its hash and stores it.
func (s *Server) putBinary(ch *pb.BinaryChunk) *pb.Status {
	bad := func(format string, args ...any) *pb.Status {
		return &pb.Status{Error: fmt.Sprintf("gcs: binary %s: "+format, append([]any{ch.Hash}, args...)...)}
	}
	switch {
	case !validHash(ch.Hash):
		return bad("the hash must be %d lowercase hex digits", 2*sha256.Size)
	case ch.Size < 0 || ch.Size > MaxBinarySize:
		return bad("size %d is not within [0, %d]", ch.Size, MaxBinarySize)
	case ch.Offset < 0 || ch.Offset > ch.Size-int64(len(ch.Data)):
		return bad("chunk [%d, %d) is not within its size %d", ch.Offset, ch.Offset+int64(len(ch.Data)), ch.Size)
	}
	s.mu.Lock()
	if _, ok := s.binaries[ch.Hash]; ok {
		s.mu.Unlock()
		return &pb.Status{} // stored already
	}
	p := s.partials[ch.Hash]
	if p == nil {
		if len(s.partials) >= maxPartials {
			s.dropOldestPartialLocked()
		}
		p = &partial{data: make([]byte, ch.Size)}
		s.partials[ch.Hash] = p
	} else if int64(len(p.data)) != ch.Size {
		s.mu.Unlock()
		return bad("size %d, but earlier chunks said %d", ch.Size, len(p.data))
	}
	s.useSeq++
	p.used = s.useSeq
	copy(p.data[ch.Offset:], ch.Data)
	p.add(ch.Offset, ch.Offset+int64(len(ch.Data)))
	if !p.complete() {
		s.mu.Unlock()
		return &pb.Status{}
	}
	delete(s.partials, ch.Hash) // p is this goroutine's alone from here on
	s.mu.Unlock()

	if got := hashOf(p.data); got != ch.Hash {
		return bad("its %d bytes hash to %s; discarded", len(p.data), got)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.saveRaw(TableBinaries, ch.Hash, p.data); err != nil {
		return &pb.Status{Error: err.Error()}
	}
	s.mu.Lock()
	s.binaries[ch.Hash] = p.data
	s.touched[ch.Hash] = s.cfg.Now().UnixMilli()
	s.mu.Unlock()
	return &pb.Status{}
}

func (s *Server) dropOldestPartialLocked() {
	var oldest string
	var used uint64
	for h, p := range s.partials {
		if oldest == "" || p.used < used {
			oldest, used = h, p.used
		}
	}
	delete(s.partials, oldest)
}

// hasBinary says whether the whole executable is stored. A driver asks
// before it starts a job with it, so the executable counts as used now.
func (s *Server) hasBinary(hash string) *pb.Status {
	s.mu.Lock()
	_, ok := s.binaries[hash]
	if ok {
		s.touched[hash] = s.cfg.Now().UnixMilli()
	}
	s.mu.Unlock()
	if !ok {
		return &pb.Status{Error: fmt.Sprintf("binary %s not stored", hash)}
	}
	return &pb.Status{}
}

// readBinary is part of a stored executable, clipped to its end and to
// MaxBinaryChunk. The slice is shared: it must not be modified.
func (s *Server) readBinary(g *pb.GetBinary) ([]byte, error) {
	s.mu.Lock()
	b, ok := s.binaries[g.Hash]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoBinary, g.Hash)
	}
	size := int64(len(b))
	if g.Offset < 0 || g.Offset >= size || g.Length < 0 {
		return nil, fmt.Errorf("gcs: binary %s: range at %d of length %d is outside its %d bytes", g.Hash, g.Offset, g.Length, size)
	}
	end := min(g.Offset+min(g.Length, MaxBinaryChunk), size)
	return b[g.Offset:end], nil
}

// jobStarted records a job, whose executable must be stored.
func (s *Server) jobStarted(j *pb.JobInfo) *pb.Status {
	if j.JobId == "" {
		return &pb.Status{Error: "gcs: a job needs an ID"}
	}
	s.mu.Lock()
	_, ok := s.binaries[j.ExeHash]
	s.mu.Unlock()
	if !ok {
		return &pb.Status{Error: fmt.Sprintf("gcs: job %s: binary %q not stored", j.JobId, j.ExeHash)}
	}
	j.State = JobRunning
	j.StartUnixMs = s.cfg.Now().UnixMilli()
	j.EndUnixMs = 0
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.save(TableJobs, j.JobId, j); err != nil {
		return &pb.Status{Error: err.Error()}
	}
	s.mu.Lock()
	s.jobs[j.JobId] = j
	s.mu.Unlock()
	return &pb.Status{}
}

// jobEnded marks a job ended, SUCCEEDED or FAILED as its raylet says (or
// as its submission's entrypoint ended, if that is known), and its actors
// but the detached ones DEAD: JOB_FINISHED after a clean end, OWNER_DIED
// when the driver died. Its record changes in memory even if the store
// cannot be written: the job is over either way. A notice with a
// submission ID and no job ID says how a submission ended.
func (s *Server) jobEnded(req *pb.JobRequest) {
	if req.JobId == "" {
		s.submissionEnded(req)
		return
	}
	status, msg := req.Status, req.Message
	if status != JobSucceeded && status != JobFailed {
		status, msg = JobFailed, fmt.Sprintf("gcs: the job's raylet said it ended %q (%s)", req.Status, req.Message)
	}
	cause, why := tasktable.CauseJobFinished, fmt.Sprintf("its job %s finished", req.JobId)
	if status == JobFailed {
		cause, why = tasktable.CauseOwnerDied, fmt.Sprintf("its owner, the driver of job %s, died: %s", req.JobId, msg)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	j := s.jobs[req.JobId]
	if j == nil {
		// A control store restarted without its tables does not know the
		// job, but knows its actors again (their nodes re-reported them):
		// they end with it.
		s.mu.Unlock()
		s.keepActorsLocked(s.state.JobEnded(req.JobId, cause, why, s.cfg.Now().UnixNano()))
		return
	}
	if JobOver(j.State) {
		s.mu.Unlock()
		return
	}
	j = proto.Clone(j).(*pb.JobInfo)
	j.State, j.Message, j.EndUnixMs = status, msg, s.cfg.Now().UnixMilli()
	if sub := s.submissions[j.SubmissionId]; sub != nil {
		applySubmission(j, sub)
	}
	s.jobs[req.JobId] = j
	s.mu.Unlock()
	_ = s.save(TableJobs, req.JobId, j)
	s.keepActorsLocked(s.state.JobEnded(req.JobId, cause, why, s.cfg.Now().UnixNano()))
	s.pruneJobsLocked()
	s.publish()
	s.groups.JobEnded(req.JobId)
}

// maxSubmissions bounds the ends of job submissions the control store
// remembers for jobs that have not ended yet.
const maxSubmissions = 1000

// submissionEnded takes how a job submission's entrypoint ended, which
// decides the state of the job its driver ran: STOPPED when it was
// stopped, FAILED when it failed (with its exit in the message).
func (s *Server) submissionEnded(req *pb.JobRequest) {
	if req.SubmissionId == "" {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if _, ok := s.submissions[req.SubmissionId]; !ok {
		s.subOrder = append(s.subOrder, req.SubmissionId)
		if len(s.subOrder) > maxSubmissions {
			delete(s.submissions, s.subOrder[0])
			s.subOrder = s.subOrder[1:]
		}
	}
	s.submissions[req.SubmissionId] = req
	var changed []*pb.JobInfo
	for id, j := range s.jobs {
		if j.SubmissionId == req.SubmissionId && JobOver(j.State) {
			j = proto.Clone(j).(*pb.JobInfo)
			if applySubmission(j, req) {
				s.jobs[id] = j
				changed = append(changed, j)
			}
		}
	}
	s.mu.Unlock()
	for _, j := range changed {
		_ = s.save(TableJobs, j.JobId, j)
	}
}

// applySubmission settles an ended job's state by how its submission
// ended, and reports whether it changed it.
func applySubmission(j *pb.JobInfo, sub *pb.JobRequest) bool {
	switch {
	case sub.Status == JobStopped && j.State != JobStopped:
		j.State, j.Message = JobStopped, joinWhy(sub.Message, j.Message)
	case sub.Status == JobFailed && j.State == JobSucceeded:
		j.State, j.Message = JobFailed, sub.Message
	case sub.Status == JobFailed && j.State == JobFailed && sub.Message != "" && !strings.Contains(j.Message, sub.Message):
		j.Message = joinWhy(j.Message, sub.Message)
	default:
		return false
	}
	return true
}

func joinWhy(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// What the control store keeps of finished jobs: the records of the
// newest (the state API lists them), and the executables that no running
// job uses but were used last (the next run of the same program needs no
// upload).
const (
	maxFinishedJobs    = 1000
	keepUnusedBinaries = 4
	// binaryGrace keeps an executable stored or asked for lately: its job
	// is about to start.
	binaryGrace = time.Minute
)

// pruneJobsLocked forgets, in memory and in the store, the oldest finished
// jobs past maxFinishedJobs and the executables past keepUnusedBinaries
// that no running job uses. s.wmu is held.
func (s *Server) pruneJobsLocked() {
	s.mu.Lock()
	var finished []*pb.JobInfo
	used := make(map[string]int64, len(s.binaries)) // when each executable was last used; MaxInt64 while running
	for _, j := range s.jobs {
		if !JobOver(j.State) {
			used[j.ExeHash] = math.MaxInt64
			continue
		}
		finished = append(finished, j)
		used[j.ExeHash] = max(used[j.ExeHash], j.EndUnixMs)
	}
	sort.Slice(finished, func(i, k int) bool {
		if finished[i].EndUnixMs != finished[k].EndUnixMs {
			return finished[i].EndUnixMs > finished[k].EndUnixMs
		}
		return finished[i].JobId < finished[k].JobId
	})
	var jobs, bins []string
	for _, j := range finished[min(len(finished), maxFinishedJobs):] {
		delete(s.jobs, j.JobId)
		jobs = append(jobs, j.JobId)
	}
	recent := s.cfg.Now().Add(-binaryGrace).UnixMilli()
	var unused []string
	for h := range s.binaries {
		used[h] = max(used[h], s.touched[h])
		if used[h] < recent {
			unused = append(unused, h)
		}
	}
	sort.Slice(unused, func(i, k int) bool { return used[unused[i]] > used[unused[k]] })
	for _, h := range unused[min(len(unused), keepUnusedBinaries):] {
		delete(s.binaries, h)
		delete(s.touched, h)
		bins = append(bins, h)
	}
	s.mu.Unlock()
	for _, id := range jobs {
		_ = s.erase(TableJobs, id)
	}
	for _, h := range bins {
		_ = s.erase(TableBinaries, h)
	}
}

func (s *Server) job(id string) (*pb.JobInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return nil, fmt.Errorf("%w %s", ErrUnknownJob, id)
	}
	return proto.Clone(j).(*pb.JobInfo), nil
}

// Jobs lists the jobs, running and finished, by start time.
func (s *Server) Jobs() []*pb.JobInfo {
	s.mu.Lock()
	out := make([]*pb.JobInfo, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, proto.Clone(j).(*pb.JobInfo))
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, k int) bool {
		if out[i].StartUnixMs != out[k].StartUnixMs {
			return out[i].StartUnixMs < out[k].StartUnixMs
		}
		return out[i].JobId < out[k].JobId
	})
	return out
}

// endedJobsWindow is how long a finished job is announced to the nodes
// (in every heartbeat's reply), so that they stop its workers: long enough
// for a node that was cut off for a while, short enough that the reply
// does not grow with the cluster's history.
const endedJobsWindow = 5 * time.Minute

// endedJobs are the IDs of the jobs that finished lately, sorted.
func (s *Server) endedJobs() []string {
	since := s.cfg.Now().Add(-endedJobsWindow).UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, j := range s.jobs {
		if JobOver(j.State) && j.EndUnixMs >= since {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
