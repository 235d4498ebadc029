package rayo

import (
	"os"

	"github.com/rayo-dev/rayo/internal/pki"
	"github.com/rayo-dev/rayo/internal/rayletclient"
)

// driverCredential is the job ID and the credential a joined driver's
// runtime presents on its TCP links, and takes from its peers: its job's
// credential (pki.JobCredential), never the cluster's secret, which the
// workers of the job do not hold. A driver whose environment holds a job
// credential (a submitted entrypoint's RAYO_TOKEN) is that job; otherwise
// it is job jobID, whose credential it makes from the cluster's secret.
//
// key is the cluster's public job key, with which the driver takes other
// jobs' credentials (callers of its named actors).
func driverCredential(secret, jobID string) (job, cred, key string) {
	key = pki.JobKey(secret)
	if t := os.Getenv(rayletclient.EnvToken); pki.IsJobCredential(t) {
		job, _ = pki.JobOfCredential(t)
		if k := os.Getenv(pki.EnvJobKey); k != "" {
			key = k
		}
		return job, t, key
	}
	return jobID, pki.JobCredential(secret, jobID), key
}
