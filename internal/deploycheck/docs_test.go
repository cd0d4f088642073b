package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestDocs_PassNumericIDsAsStrings: ZITADEL's client and project IDs are
// all digits, so `helm --set zitadel.clientId=123...` makes them numbers,
// which values.schema.json (type string) refuses: the documented install
// failed as written. Every documented command uses --set-string for them.
func TestDocs_PassNumericIDsAsStrings(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	files = append(files, filepath.Join(root, "README.md"), filepath.Join(root, "charts", "gatehouse", "values.yaml"))
	bad := regexp.MustCompile(`--set\s+zitadel\.(clientId|projectId)=`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range bad.FindAll(b, -1) {
			rel, _ := filepath.Rel(root, f)
			t.Errorf("%s: %q: a numeric ID fails the chart's schema (got number, want string); use --set-string", rel, m)
		}
	}
}
