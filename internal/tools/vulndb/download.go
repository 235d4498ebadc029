package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// module is what `go mod download -json` says of one module version.
type module struct {
	Path    string
	Version string
	Info    string
	Dir     string
	Sum     string
	Error   string
	Time    time.Time `json:"-"`
}

// download fetches path@version into the module cache with the go command,
// which takes it from GOPROXY and checks it against GOSUMDB, and then
// checks its checksum against wantSum as well.
func download(ctx context.Context, goCmd, path, version, wantSum string) (*module, error) {
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "-json", path+"@"+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var m module
	if err := json.Unmarshal(out, &m); err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("go mod download %s@%s: %w: %s", path, version, runErr, bytes.TrimSpace(stderr.Bytes()))
		}
		return nil, fmt.Errorf("go mod download %s@%s: unreadable answer: %w", path, version, err)
	}
	if m.Error != "" {
		return nil, fmt.Errorf("go mod download %s@%s: %s", path, version, m.Error)
	}
	if runErr != nil {
		return nil, fmt.Errorf("go mod download %s@%s: %w: %s", path, version, runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if m.Sum != wantSum {
		return nil, fmt.Errorf("%s@%s has checksum %s, want the pinned %s", path, version, m.Sum, wantSum)
	}
	if m.Dir == "" {
		return nil, errors.New("go mod download named no folder for " + path + "@" + version)
	}
	info, err := os.ReadFile(m.Info)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", path, version, err)
	}
	var meta struct{ Time time.Time }
	if err := json.Unmarshal(info, &meta); err != nil {
		return nil, fmt.Errorf("%s@%s: bad info file %s: %w", path, version, m.Info, err)
	}
	m.Time = meta.Time
	return &m, nil
}
