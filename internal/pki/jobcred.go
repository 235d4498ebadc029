package pki

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A job credential is what a job's processes (its driver, its workers, a
// submitted entrypoint) present instead of the cluster's secret:
//
//	rayojob1.<job ID>.<signature, base64url>
//
// The signature is Ed25519, over the job ID, by the cluster's job key: a
// key pair every daemon derives from the cluster's secret (its private
// half is an HMAC of the secret), so a daemon mints and verifies job
// credentials without a lookup, and any job's process, given the public
// half (JobKey, not a secret), verifies another job's credential too. A
// job cannot derive the secret, the private key nor another job's
// credential from its own. Ed25519 signatures are deterministic: every
// daemon makes the same credential for a job.
//
// rpc gives a connection that presented one the job's role: it may run
// tasks, actors and objects of its job and read state, but not the
// cluster's own methods (see rpc's method table).
const jobCredPrefix = "rayojob1."

// EnvJobKey names the cluster's public job key (hex) in the environment
// of a job's processes, which check other jobs' credentials with it.
const EnvJobKey = "RAYO_JOB_KEY"

// maxJobID bounds a job ID inside a credential.
const maxJobID = 64

// ErrJobCredential is how a malformed or forged job credential is refused.
var ErrJobCredential = errors.New("pki: not a valid job credential of this cluster")

// jobSigner is the cluster's job key pair, derived from its secret (or
// join token); nil when there is no secret.
func jobSigner(token string) ed25519.PrivateKey {
	secret := Secret(token)
	if secret == "" {
		return nil
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("rayo job signing key v1"))
	return ed25519.NewKeyFromSeed(m.Sum(nil))
}

// JobKey is the public half of the cluster's job key, in hex, for the
// cluster whose secret (or join token) is token: what job processes
// verify credentials with (EnvJobKey). "" when token is.
func JobKey(token string) string {
	k := jobSigner(token)
	if k == nil {
		return ""
	}
	return hex.EncodeToString(k.Public().(ed25519.PublicKey))
}

// JobCredential is the credential of job jobID in the cluster whose
// secret (or join token) is token. It is "" when token is: a cluster
// without a secret needs no credentials.
func JobCredential(token, jobID string) string {
	k := jobSigner(token)
	if k == nil {
		return ""
	}
	return jobCredPrefix + jobID + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k, jobMessage(jobID)))
}

func jobMessage(jobID string) []byte { return []byte("rayo job credential\x00" + jobID) }

// IsJobCredential reports whether cred has the form of a job credential
// (not whether it is genuine: see VerifyJobCredential).
func IsJobCredential(cred string) bool {
	_, _, err := splitJobCredential(cred)
	return err == nil
}

// JobOfCredential is the job a credential names, without verifying it:
// for the job's own processes, which hold it from their raylet.
func JobOfCredential(cred string) (string, error) {
	job, _, err := splitJobCredential(cred)
	return job, err
}

func splitJobCredential(cred string) (job string, sig []byte, err error) {
	rest, ok := strings.CutPrefix(cred, jobCredPrefix)
	if !ok {
		return "", nil, ErrJobCredential
	}
	job, enc, ok := strings.Cut(rest, ".")
	if ok {
		sig, err = base64.RawURLEncoding.DecodeString(enc)
	}
	if !ok || err != nil || job == "" || len(job) > maxJobID || len(sig) != ed25519.SignatureSize {
		return "", nil, fmt.Errorf("%w: want %s<job ID>.<signature>", ErrJobCredential, jobCredPrefix)
	}
	for _, r := range job {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_') {
			return "", nil, fmt.Errorf("%w: the job ID holds %q", ErrJobCredential, r)
		}
	}
	return job, sig, nil
}

// VerifyJobCredential checks cred against the cluster's secret (or join
// token) and returns the job it was made for.
func VerifyJobCredential(token, cred string) (string, error) {
	return VerifyJobCredentialKey(JobKey(token), cred)
}

// VerifyJobCredentialKey checks cred against the cluster's public job key
// (hex, JobKey) and returns the job it was made for.
func VerifyJobCredentialKey(key, cred string) (string, error) {
	job, sig, err := splitJobCredential(cred)
	if err != nil {
		return "", err
	}
	pub, err := hex.DecodeString(key)
	if err != nil || len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, jobMessage(job), sig) {
		return "", ErrJobCredential
	}
	return job, nil
}
