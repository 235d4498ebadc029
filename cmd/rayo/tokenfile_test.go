package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenFrom(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("token", "  s3cret\n")
	tests := []struct {
		name, token, file, want, err string
	}{
		{"no file: the token", "abc", "", "abc", ""},
		{"the file, trimmed", "", good, "s3cret", ""},
		{"the file agreeing with the token", "s3cret", good, "s3cret", ""},
		{"the file disagreeing with the token", "other", good, "", "give different tokens"},
		{"a missing file", "", filepath.Join(dir, "missing"), "", "no such file"},
		{"an empty file", "", write("empty", "\n \n"), "", "the file is empty"},
		{"a file too large for a token", "", write("big", strings.Repeat("x", maxTokenFile+1)), "", "a token is at most 4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tokenFrom(tc.token, tc.file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestJobTokenFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if _, _, err := run(t, "job", "list", "--dashboard-address", "127.0.0.1:1", "--token-file", missing); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("rayo job with a missing --token-file: %v", err)
	}
	t.Setenv("RAYO_TOKEN_FILE", missing)
	if _, _, err := run(t, "job", "list", "--dashboard-address", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("rayo job with a missing RAYO_TOKEN_FILE: %v", err)
	}
}

func TestStartTokenCommandLineWins(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		fromEnv map[string]bool
		want    string
		err     string
	}{
		{"--token-file over RAYO_TOKEN", "from-env", map[string]bool{"token": true}, "from-file", ""},
		{"--token over RAYO_TOKEN_FILE", "from-flag", map[string]bool{"token-file": true}, "from-flag", ""},
		{"both on the command line must agree", "from-flag", nil, "", "give different tokens"},
		{"both twins must agree", "from-env", map[string]bool{"token": true, "token-file": true}, "", "give different tokens"},
		{"both agreeing", "from-file", nil, "from-file", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := startToken(tc.token, file, tc.fromEnv)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
