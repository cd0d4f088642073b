// Package buildinfo says what a binary knows about its own build: the release
// version stamped at link time (-ldflags "-X main.version=1.2.3") and what the
// Go toolchain records in every binary (runtime/debug.ReadBuildInfo): the
// commit (vcs.revision), whether the tree had uncommitted changes, the Go
// version, the build tags and the platform.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Unknown stands for a value the binary does not carry (e.g. a commit, when
// it was built outside a git checkout without -X main.commit).
const Unknown = "unknown"

// Info describes one build.
type Info struct {
	Version    string // release version; "dev" for an unstamped build
	Commit     string // full commit hash, or Unknown
	CommitTime string // commit time (RFC 3339) from vcs.time; "" when unknown
	Modified   bool   // built from a tree with uncommitted changes
	GoVersion  string // e.g. go1.26.11
	Tags       string // the -tags list, comma-separated; "" for none
	Platform   string // GOOS/GOARCH
}

// Read describes the running binary. version and commit are what the linker
// stamped (-X main.version, -X main.commit; "" when not stamped): the version
// stamp wins over the module version, the toolchain's vcs.revision wins over
// the commit stamp (which exists for builds without .git, e.g. a Docker
// context).
func Read(version, commit string) Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return FromBuildInfo(bi, version, commit)
}

// FromBuildInfo is Read for a given build info (nil: none).
func FromBuildInfo(bi *debug.BuildInfo, version, commit string) Info {
	info := Info{Version: version, Commit: commit, GoVersion: Unknown, Platform: Unknown}
	if bi != nil {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version // go install module@v1.2.3
		}
		var goos, goarch string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.time":
				info.CommitTime = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			case "-tags":
				info.Tags = s.Value
			case "GOOS":
				goos = s.Value
			case "GOARCH":
				goarch = s.Value
			}
		}
		if goos != "" && goarch != "" {
			info.Platform = goos + "/" + goarch
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	return info
}

// String is the `gatehouse version` output: the version on the first line,
// then one "key: value" line per fact.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gatehouse %s\n", i.Version)
	commit := i.Commit
	if i.Modified {
		commit += " (modified)"
	}
	fmt.Fprintf(&b, "  commit:      %s\n", commit)
	if i.CommitTime != "" {
		fmt.Fprintf(&b, "  commit time: %s\n", i.CommitTime)
	}
	fmt.Fprintf(&b, "  go:          %s\n", i.GoVersion)
	tags := i.Tags
	if tags == "" {
		tags = "(none)"
	}
	fmt.Fprintf(&b, "  build tags:  %s\n", tags)
	fmt.Fprintf(&b, "  platform:    %s\n", i.Platform)
	return b.String()
}

// Labels are the facts as metric labels (gatehouse_build_info) and log
// attributes, under one set of names.
func (i Info) Labels() map[string]string {
	return map[string]string{
		"version":    i.Version,
		"commit":     i.Commit,
		"modified":   fmt.Sprint(i.Modified),
		"go_version": i.GoVersion,
		"tags":       i.Tags,
		"platform":   i.Platform,
	}
}

// LogAttrs are Labels as slog key-value pairs, in a fixed order.
func (i Info) LogAttrs() []any {
	return []any{"version", i.Version, "commit", i.Commit, "modified", i.Modified,
		"go_version", i.GoVersion, "tags", i.Tags, "platform", i.Platform}
}
