package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is stamped by the release (make release:
// -ldflags "-X main.version=v1.2.3"); otherwise it comes from the build
// information: the module's version for `go install ...@v1.2.3`, or the
// pseudo-version Go derives from the checkout.
var version = ""

// buildVersion is what a rayo binary knows of its own build.
type buildVersion struct {
	Version   string // v1.2.3, a pseudo-version, or "(devel)"
	Revision  string // the VCS commit it was built from, or ""
	Time      string // the commit's time (RFC 3339), or ""
	Modified  bool   // built from a checkout with uncommitted changes
	GoVersion string // the Go toolchain that built it
	Platform  string // GOOS/GOARCH
}

// readBuildVersion reads the binary's build information, with stamped
// (main.version) in place of the module version when it is set.
func readBuildVersion(stamped string, bi *debug.BuildInfo, ok bool) buildVersion {
	v := buildVersion{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if ok {
		if bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			v.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if stamped != "" {
		v.Version = stamped
	}
	return v
}

// String is the one line that `rayo version` and `rayo --version` print,
// such as "rayo v0.1.0 (commit 69e019b12345, modified; go1.26.8 linux/amd64)".
func (v buildVersion) String() string {
	detail := ""
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		detail = "commit " + rev
		if v.Modified {
			detail += ", modified"
		}
		detail += "; "
	}
	return fmt.Sprintf("rayo %s (%s%s %s)", v.Version, detail, v.GoVersion, v.Platform)
}

// versionLine is this binary's version line.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	return readBuildVersion(version, bi, ok).String()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rayo's version, the commit it was built from and the Go that built it (also rayo --version)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		},
	}
}
