// Package version reports which keygate this binary is: the version and
// commit stamped at build time, and the Caddy and Go it was built with.
//
// Release builds stamp the values with the linker:
//
//	go build -ldflags "-X github.com/keygate/keygate/internal/version.Version=v1.2.0 \
//	  -X github.com/keygate/keygate/internal/version.Commit=$(git rev-parse HEAD)" ./cmd/keygate
//
// Without them, the module version and the VCS stamp of `go build` are used
// when present, else "devel".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Set at build time with -ldflags "-X …"; empty means unknown.
var (
	// Version is keygate's release version, e.g. "v1.2.0".
	Version string
	// Commit is the git commit the binary was built from.
	Commit string
	// Date is the commit time (RFC 3339), which keeps builds reproducible.
	Date string
)

// Info describes this binary.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Date    string `json:"date,omitempty"`
	Caddy   string `json:"caddy"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

// Get returns the stamped values, completed from the build info that the Go
// toolchain embeds when they were not stamped.
func Get() Info {
	caddyVersion, _ := caddy.Version()
	in := Info{Version: Version, Commit: Commit, Date: Date, Caddy: caddyVersion,
		Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && Commit == "" && in.Commit != "" {
			in.Commit += "-dirty"
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	return in
}

// String is the one-line form `keygate version` prints, e.g.
// "keygate v1.2.0 (commit 4c9d5da1e0f2, 2026-11-30T22:00:00Z; Caddy v2.11.9; go1.26.8 linux/amd64)".
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keygate %s (", in.Version)
	if in.Commit != "" {
		fmt.Fprintf(&b, "commit %s", shortCommit(in.Commit))
		if in.Date != "" {
			fmt.Fprintf(&b, ", %s", in.Date)
		}
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "Caddy %s; %s %s/%s)", in.Caddy, in.Go, in.OS, in.Arch)
	return b.String()
}

// shortCommit keeps 12 hex digits of a commit id (and a -dirty suffix).
func shortCommit(c string) string {
	id, suffix, _ := strings.Cut(c, "-")
	if len(id) > 12 {
		id = id[:12]
	}
	if suffix != "" {
		return id + "-" + suffix
	}
	return id
}
