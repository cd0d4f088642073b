package deploycheck

import (
	"os"
	"regexp"
	"testing"
)

// TestK8sSecret_EveryDocumentedKeyReachesTheDeployment: k8s/secret.yaml
// tells users which keys to fill in; each must be read by the Deployment
// in k8s/gatehouse.yaml (a secretKeyRef), or the value would sit in the
// Secret and never reach Gatehouse (REDIS_PASSWORD once did, with the
// manifests rendered for the cookie store).
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
	documented := regexp.MustCompile(`(?m)^#   ([A-Z][A-Z0-9_]+) `).FindAllSubmatch(secret, -1)
	if len(documented) < 4 {
		t.Fatalf("k8s/secret.yaml lists %d keys in its header; the test reads the list wrongly", len(documented))
	}
	for _, m := range documented {
		if !regexp.MustCompile(`(?m)^\s+key: ` + string(m[1]) + `$`).Match(deploy) {
			t.Errorf("k8s/secret.yaml documents %s, but k8s/gatehouse.yaml has no secretKeyRef for it: the value is never read", m[1])
		}
	}
}
