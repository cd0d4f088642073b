package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	settings := []debug.BuildSetting{
		{Key: "-tags", Value: "production,grpcnotrace"},
		{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	for _, tc := range []struct {
		name            string
		bi              *debug.BuildInfo
		version, commit string
		want            Info
	}{
		{"release build: stamp wins over the module version, vcs over the commit stamp",
			&debug.BuildInfo{GoVersion: "go1.26.11", Main: debug.Module{Version: "(devel)"}, Settings: settings},
			"1.2.3", "ffffffff",
			Info{Version: "1.2.3", Commit: "0123456789abcdef0123456789abcdef01234567", CommitTime: "2026-12-01T10:00:00Z",
				Modified: true, GoVersion: "go1.26.11", Tags: "production,grpcnotrace", Platform: "linux/arm64"}},
		{"go install module@version: the module version",
			&debug.BuildInfo{GoVersion: "go1.26.11", Main: debug.Module{Version: "v1.4.0"}},
			"", "",
			Info{Version: "v1.4.0", Commit: Unknown, GoVersion: "go1.26.11", Platform: Unknown}},
		{"no .git (Docker context): the commit stamp",
			&debug.BuildInfo{GoVersion: "go1.26.11", Main: debug.Module{Version: "(devel)"}},
			"", "abc123",
			Info{Version: "dev", Commit: "abc123", GoVersion: "go1.26.11", Platform: Unknown}},
		{"no build info at all",
			nil, "", "",
			Info{Version: "dev", Commit: Unknown, GoVersion: Unknown, Platform: Unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := FromBuildInfo(tc.bi, tc.version, tc.commit); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestInfoString_NamesEveryFact(t *testing.T) {
	t.Parallel()
	s := Info{Version: "1.2.3", Commit: "abc", Modified: true, GoVersion: "go1.26.11", Tags: "production", Platform: "linux/amd64"}.String()
	for _, want := range []string{"gatehouse 1.2.3\n", "commit:      abc (modified)\n", "go:          go1.26.11\n",
		"build tags:  production\n", "platform:    linux/amd64\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("version output lacks %q:\n%s", want, s)
		}
	}
	if s := (Info{Version: "dev"}).String(); !strings.Contains(s, "build tags:  (none)") {
		t.Errorf("a build without tags should say so:\n%s", s)
	}
}

// TestRead_ThisTestBinary reads the real build info of the running test
// binary: the Go version is the toolchain's.
func TestRead_ThisTestBinary(t *testing.T) {
	t.Parallel()
	info := Read("", "")
	if !strings.HasPrefix(info.GoVersion, "go1.") || info.Version == "" || info.Platform == Unknown {
		t.Errorf("Read() = %+v", info)
	}
}
