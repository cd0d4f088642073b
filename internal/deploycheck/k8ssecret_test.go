package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestK8sSecret_EveryDocumentedKeyReachesTheDeployment: k8s/secret.yaml
// tells users which keys to fill in; each must be read by the Deployment
// in k8s/gatehouse.yaml (a secretKeyRef), or the value would sit in the
// Secret and never reach Gatehouse (REDIS_PASSWORD once did, with the
// manifests rendered for the cookie store). A key that only a kustomize
// component under k8s/ reads (the application key, mounted as a file by
// k8s/zitadel-key) counts when its entry in secret.yaml names that component.
func TestK8sSecret_EveryDocumentedKeyReachesTheDeployment(t *testing.T) {
	t.Parallel()
	secret, err := os.ReadFile("../../k8s/secret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := os.ReadFile("../../k8s/gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	components := map[string][]byte{} // directory name → kustomization.yaml
	files, err := filepath.Glob("../../k8s/*/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^kind: Component$`).Match(b) {
			components[filepath.Base(filepath.Dir(f))] = b
		}
	}
	// An entry: "#   NAME   text", continued by lines indented past the name.
	entries := regexp.MustCompile(`(?m)^#   ([A-Z][A-Z0-9_]+) +(.*(?:\n#    +.*)*)`).FindAllSubmatch(secret, -1)
	if len(entries) < 4 {
		t.Fatalf("k8s/secret.yaml lists %d keys in its header; the test reads the list wrongly", len(entries))
	}
	for _, m := range entries {
		name, text := string(m[1]), string(m[2])
		if regexp.MustCompile(`(?m)^\s+key: ` + name + `$`).Match(deploy) {
			continue
		}
		found := false
		for dir, b := range components {
			if regexp.MustCompile(`(?m)^\s+(- )?key: `+name+`$`).Match(b) && strings.Contains(text, dir+" component") {
				found = true
			}
		}
		if !found {
			t.Errorf("k8s/secret.yaml documents %s, but neither k8s/gatehouse.yaml nor a component its entry names reads it: the value is never read", name)
		}
	}
}
