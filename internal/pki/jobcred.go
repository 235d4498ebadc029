package pki

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A job credential is what a job's processes (its driver, its workers, a
// submitted entrypoint) present instead of the cluster's secret:
//
//	rayojob1.<job ID>.<HMAC-SHA256 of the cluster secret over the job ID, hex>
//
// Every daemon holds the secret, so it verifies a job credential without
// a lookup, and learns which job it speaks for; the job cannot derive the
// secret, nor another job's credential, from it. rpc gives a connection
// that presented one the job role: it may run tasks, actors and objects of
// its own job and read state, but not the cluster's own methods (see
// rpc's method table).
const jobCredPrefix = "rayojob1."

// maxJobID bounds a job ID inside a credential.
const maxJobID = 64

// ErrJobCredential is how a malformed or forged job credential is refused.
var ErrJobCredential = errors.New("pki: not a valid job credential of this cluster")

// JobCredential is the credential of job jobID in the cluster whose
// secret (or join token) is token. It is "" when token is: a cluster
// without a secret needs no credentials.
func JobCredential(token, jobID string) string {
	secret := Secret(token)
	if secret == "" {
		return ""
	}
	return jobCredPrefix + jobID + "." + jobMAC(secret, jobID)
}

func jobMAC(secret, jobID string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("rayo job credential\x00"))
	m.Write([]byte(jobID))
	return hex.EncodeToString(m.Sum(nil))
}

// IsJobCredential reports whether cred has the form of a job credential
// (not whether it is genuine: see VerifyJobCredential).
func IsJobCredential(cred string) bool {
	_, _, err := splitJobCredential(cred)
	return err == nil
}

// JobOfCredential is the job a credential names, without verifying it:
// for the job's own processes, which hold no secret to verify it with.
func JobOfCredential(cred string) (string, error) {
	job, _, err := splitJobCredential(cred)
	return job, err
}

func splitJobCredential(cred string) (job, mac string, err error) {
	rest, ok := strings.CutPrefix(cred, jobCredPrefix)
	if !ok {
		return "", "", ErrJobCredential
	}
	job, mac, ok = strings.Cut(rest, ".")
	if !ok || job == "" || len(job) > maxJobID || len(mac) != 2*sha256.Size {
		return "", "", fmt.Errorf("%w: want %s<job ID>.<64 hex digits>", ErrJobCredential, jobCredPrefix)
	}
	for _, r := range job {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return "", "", fmt.Errorf("%w: the job ID holds %q", ErrJobCredential, r)
		}
	}
	return job, mac, nil
}

// VerifyJobCredential checks cred against the cluster's secret (or join
// token) and returns the job it was made for.
func VerifyJobCredential(token, cred string) (string, error) {
	secret := Secret(token)
	job, mac, err := splitJobCredential(cred)
	if err != nil {
		return "", err
	}
	if secret == "" || subtle.ConstantTimeCompare([]byte(mac), []byte(jobMAC(secret, job))) != 1 {
		return "", ErrJobCredential
	}
	return job, nil
}
