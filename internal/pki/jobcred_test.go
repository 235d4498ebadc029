package pki

import (
	"errors"
	"strings"
	"testing"
)

func TestJobCredentialVerifies(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	cred := JobCredential(secret, "a1b2c3")
	if strings.Contains(cred, secret) {
		t.Fatalf("the credential %q carries the secret", cred)
	}
	job, err := VerifyJobCredential(secret, cred)
	if err != nil || job != "a1b2c3" {
		t.Fatalf("VerifyJobCredential = %q, %v; want a1b2c3", job, err)
	}
	// A join token of the same secret verifies it too.
	if job, err := VerifyJobCredential("K10"+strings.Repeat("ab", 32)+"::"+secret, cred); err != nil || job != "a1b2c3" {
		t.Fatalf("with the join token: %q, %v", job, err)
	}
	// A job's process verifies it with the public key alone.
	if job, err := VerifyJobCredentialKey(JobKey(secret), cred); err != nil || job != "a1b2c3" {
		t.Fatalf("VerifyJobCredentialKey = %q, %v", job, err)
	}
	if JobCredential(secret, "a1b2c3") != cred {
		t.Fatal("two daemons would make different credentials for one job")
	}
	if strings.Contains(JobKey(secret), secret) {
		t.Fatal("the public job key carries the secret")
	}
	if got, err := JobOfCredential(cred); err != nil || got != "a1b2c3" {
		t.Fatalf("JobOfCredential = %q, %v", got, err)
	}
	if JobCredential("", "a1") != "" {
		t.Fatal("a cluster without a secret got a credential")
	}
}

func TestJobCredentialRefusesForgeries(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	cred := JobCredential(secret, "job1")
	sig := cred[strings.LastIndex(cred, ".")+1:]
	for name, bad := range map[string]string{
		"another secret":          JobCredential("ffffffffffffffffffffffffffffffff", "job1"),
		"another job's signature": "rayojob1.job2." + sig,
		"the secret itself":       secret,
		"empty":                   "",
		"no signature":            "rayojob1.job1",
		"short signature":         "rayojob1.job1." + sig[:10],
		"empty job":               "rayojob1.." + sig,
		"job ID with a slash":     "rayojob1.a/b." + sig,
		"long job ID":             "rayojob1." + strings.Repeat("a", 65) + "." + sig,
	} {
		if job, err := VerifyJobCredential(secret, bad); !errors.Is(err, ErrJobCredential) {
			t.Errorf("%s (%q): verified as job %q, err %v", name, bad, job, err)
		}
	}
	if _, err := VerifyJobCredential("", cred); !errors.Is(err, ErrJobCredential) {
		t.Errorf("verified without a secret: %v", err)
	}
}
