package deploycheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dockerignore is a small reading of .dockerignore: each pattern is matched against the
// path and every parent folder (so "/charts/" excludes all below it), "**/" matches any
// depth, a leading "!" re-includes, and the last matching line wins.
type dockerignore []string

func (d dockerignore) excluded(path string) bool {
	out := false
	for _, raw := range d {
		pat := strings.TrimSpace(raw)
		if pat == "" || strings.HasPrefix(pat, "#") {
			continue
		}
		neg := strings.HasPrefix(pat, "!")
		pat = strings.Trim(strings.TrimPrefix(pat, "!"), "/")
		if matchIgnore(pat, path) {
			out = !neg
		}
	}
	return out
}

func matchIgnore(pat, path string) bool {
	segs := strings.Split(path, "/")
	for i := 1; i <= len(segs); i++ {
		prefix := strings.Join(segs[:i], "/")
		if ok, _ := filepath.Match(pat, prefix); ok {
			return true
		}
		if rest, found := strings.CutPrefix(pat, "**/"); found {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(segs[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

// TestDockerignore keeps secrets and clutter out of the build context while every input
// of `go build ./cmd/gatehouse` (the Dockerfile's build stage) stays in.
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ign := dockerignore(strings.Split(string(raw), "\n"))
	for _, p := range []string{".env", ".env.local", ".git/config", "charts/gatehouse/values.yaml", "bin/tilt/gatehouse", "k8s/gatehouse.yaml",
		"internal/interop/node/node_modules/oidc-provider/package.json", "internal/interop/node/provider.js"} {
		if !ign.excluded(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	kept := []string{"go.mod", "go.sum", ".env.example"}
	for _, dir := range []string{"cmd", "internal", "templates"} {
		_ = filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			// deploycheck and interop hold tests only (interop: a test package
			// and the Node provider it runs), nothing the image build compiles.
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") && !strings.Contains(p, "deploycheck") &&
				!strings.Contains(filepath.ToSlash(p), "internal/interop/") {
				rel, _ := filepath.Rel(root, p)
				kept = append(kept, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	for _, p := range kept {
		if ign.excluded(p) && !strings.HasSuffix(p, ".md") {
			t.Errorf(".dockerignore excludes %s, which the image build needs", p)
		}
	}
}

func TestDockerignoreMatcher(t *testing.T) {
	ign := dockerignore{"/charts/", "**/*.md", ".env.*", "!.env.example", "*.test"}
	for path, want := range map[string]bool{
		"charts/x/y.yaml":  true,
		"docs/a/README.md": true,
		".env.local":       true,
		".env.example":     false,
		"cmd/main.go":      false,
		"x.test":           true,
		"internal/charts":  false,
	} {
		if got := ign.excluded(path); got != want {
			t.Errorf("excluded(%q) = %v, want %v", path, got, want)
		}
	}
}
