package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFlagMatchesCommand(t *testing.T) {
	cmdOut, _, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	flagOut, _, err := run(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if flagOut != cmdOut {
		t.Errorf("--version printed %q, version printed %q", flagOut, cmdOut)
	}
	if want := versionLine() + "\n"; cmdOut != want {
		t.Errorf("version printed %q, want %q", cmdOut, want)
	}
}

// TestBinaryDropsUnusedMethods checks that the linker can still leave
// out the methods nothing calls: a reflective method lookup anywhere in
// the binary (cobra's Version field prints through text/template) keeps
// every exported method of every linked type, which made the binary, and
// each worker process's start, 10 MB larger. The Redis client's GEOADD
// stands for them: rayo never calls it.
func TestBinaryDropsUnusedMethods(t *testing.T) {
	bin := buildRayo(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "github.com/redis/go-redis/v9.") {
			found = true // the client is linked: the check below means something
		}
		if s.Name == "github.com/redis/go-redis/v9.cmdable.GeoAdd" {
			t.Fatalf("the binary holds %s, which nothing calls: some reflective method lookup keeps every method", s.Name)
		}
	}
	if !found {
		t.Fatal("the binary links no Redis client; pick another unused method to check")
	}
}

func TestReadBuildVersion(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "69e019b1234567890abcdef"},
		{Key: "vcs.time", Value: "2026-12-04T17:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	tests := []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"no build information", "", nil, false, "rayo (devel) (" + runtime.Version() + " " + platform + ")"},
		{"go install @version", "", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}}, true,
			"rayo v1.2.3 (go1.26.0 " + platform + ")"},
		{"checkout with changes", "", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs}, true,
			"rayo (devel) (commit 69e019b12345, modified; go1.26.0 " + platform + ")"},
		{"stamped by the release", "v0.1.0", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs[:3]}, true,
			"rayo v0.1.0 (commit 69e019b12345; go1.26.0 " + platform + ")"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := readBuildVersion(tc.stamped, tc.bi, tc.ok)
			if got := v.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// repoRoot is the module's root folder, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "release.sh")); err != nil {
		t.Fatalf("no release script: %v", err)
	}
	return root
}

// TestMakeRelease runs `make release` for this machine's platform only
// (each platform is another full build) and checks what it made: an
// archive and its checksum, holding the LICENSE and a static binary that
// prints the stamped version.
func TestMakeRelease(t *testing.T) {
	root := repoRoot(t)
	dist := t.TempDir()
	const ver = "v0.0.0-releasetest"
	c := exec.Command("make", "-C", root, "release", "VERSION="+ver, "PLATFORMS=linux/"+runtime.GOARCH, "DIST="+dist)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	name := "rayo-" + ver + "-linux-" + runtime.GOARCH
	archive := filepath.Join(dist, name+".tar.gz")
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]) + "  " + name + ".tar.gz\n"; string(sums) != want {
		t.Errorf("SHA256SUMS is %q, want %q", sums, want)
	}

	files := untar(t, archive, t.TempDir())
	for _, f := range []string{"rayo", "LICENSE", "README.md"} {
		if _, ok := files[name+"/"+f]; !ok {
			t.Errorf("the archive lacks %s/%s; it holds %v", name, f, files)
		}
	}
	bin := files[name+"/rayo"]
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v)", p.Type)
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "rayo " + ver + " ("; !strings.HasPrefix(string(out), want) {
		t.Errorf("--version printed %q, want it to begin %q", out, want)
	}
}

// TestReleaseRefusesBadInput checks the release script's errors, which
// come before any build.
func TestReleaseRefusesBadInput(t *testing.T) {
	root := repoRoot(t)
	tests := []struct {
		name, version, platforms, want string
	}{
		{"not Linux", "v1.0.0", "darwin/arm64", "Linux only"},
		{"a version a file name cannot hold", "v1/../x", "linux/amd64", "use only letters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := exec.Command(filepath.Join(root, "deploy", "release.sh"))
			c.Env = append(os.Environ(), "VERSION="+tc.version, "PLATFORMS="+tc.platforms, "DIST="+t.TempDir())
			out, err := c.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("release.sh: %v, want a failing exit\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("release.sh said %q, want %q in it", out, tc.want)
			}
		})
	}
}

// untar unpacks a .tar.gz into dir and returns its regular files by their
// name in the archive.
func untar(t *testing.T, archive, dir string) map[string]string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if strings.Contains(h.Name, "..") {
			t.Fatalf("archive entry %q leaves its folder", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(h.Mode)&0o777)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(fmt.Errorf("unpack %s: %w", h.Name, err))
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		files[h.Name] = p
	}
}
