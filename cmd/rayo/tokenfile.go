package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// maxTokenFile bounds a token file: a token travels in a peer's first
// frame, which is at most 4 KiB.
const maxTokenFile = 4 << 10

// readTokenFile reads a cluster token from a file (a mounted Kubernetes
// Secret, say), without its surrounding white space.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("--token-file %s: %d bytes; a token is at most %d", path, len(b), maxTokenFile)
	}
	t := string(bytes.TrimSpace(b))
	if t == "" {
		return "", fmt.Errorf("--token-file %s: the file is empty", path)
	}
	return t, nil
}

// tokenFrom is the cluster token that --token and --token-file (or their
// twins, RAYO_TOKEN and RAYO_TOKEN_FILE) give: the file's when it is
// named, which must then agree with --token if that is given too.
func tokenFrom(token, tokenFile string) (string, error) {
	if tokenFile == "" {
		return token, nil
	}
	t, err := readTokenFile(tokenFile)
	if err != nil {
		return "", err
	}
	if token != "" && token != t {
		return "", errors.New("--token and --token-file (or RAYO_TOKEN and RAYO_TOKEN_FILE) give different tokens: give one")
	}
	return t, nil
}

// startToken is tokenFrom for `rayo start`, where fromEnv names the flags
// that came from their environment twins: a flag on the command line wins
// over the other's twin (--token-file over RAYO_TOKEN, --token over
// RAYO_TOKEN_FILE); given the same way, both must agree.
func startToken(token, tokenFile string, fromEnv map[string]bool) (string, error) {
	switch {
	case tokenFile != "" && fromEnv["token"] && !fromEnv["token-file"]:
		token = ""
	case token != "" && fromEnv["token-file"] && !fromEnv["token"]:
		tokenFile = ""
	}
	return tokenFrom(token, tokenFile)
}
