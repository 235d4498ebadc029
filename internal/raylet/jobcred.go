package raylet

import (
	"errors"

	"github.com/rayo-dev/rayo/internal/pki"
)

// ErrOtherJob refuses a peer holding one job's credential what only
// another job (or the cluster) may do.
var ErrOtherJob = errors.New("a job's credential acts for its own job only")

// jobToken is what this raylet gives a job's processes and presents to
// them: the job's credential (pki.JobCredential), never the cluster's
// secret, so that a job that prints its environment shows nothing that
// runs code as another job or as the cluster. "" when the cluster has no
// secret. The embedded driver's workers (job "") take its job's.
func (r *Raylet) jobToken(jobID string) string {
	if jobID == "" {
		jobID = r.cfg.EmbeddedJob
	}
	return pki.JobCredential(r.cfg.Token, jobID)
}
