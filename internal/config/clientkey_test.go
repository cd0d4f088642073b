package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
)

func TestLoad_ApplicationKeyFromFileOrVariable(t *testing.T) {
	t.Parallel()
	key, err := devidp.NewApplicationKey(valid()["ZITADEL_CLIENT_ID"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, key.JSON, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"ZITADEL_KEY": string(key.JSON), "ZITADEL_KEY_FILE": path} {
		env := valid()
		env[name] = v
		c, err := load(env, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.ClientKey == nil || c.ClientKey.KeyID != key.KeyID || c.ClientSecret != "" {
			t.Errorf("%s: ClientKey = %v", name, c.ClientKey)
		}
	}
	if c, err := load(valid(), nil); err != nil || c.ClientKey != nil {
		t.Errorf("without a key: %v, %v", c.ClientKey, err)
	}
}

func TestLoad_ClientAuthenticationProblems_OneLineEachNoKeyMaterial(t *testing.T) {
	t.Parallel()
	clientID := valid()["ZITADEL_CLIENT_ID"]
	key, err := devidp.NewApplicationKey(clientID)
	if err != nil {
		t.Fatal(err)
	}
	other, err := devidp.NewApplicationKey("999999999999999999")
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ecJSON, _ := json.Marshal(map[string]string{"type": "application", "keyId": "1", "clientId": clientID,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))})
	truncated := string(key.JSON[:len(key.JSON)/2])
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, key.JSON, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"secret and key", map[string]string{"ZITADEL_CLIENT_SECRET": "s3cr3t-value", "ZITADEL_KEY": string(key.JSON)},
			"ZITADEL_CLIENT_SECRET, ZITADEL_KEY: set at most one: a client secret (ZITADEL_CLIENT_SECRET), an application key (ZITADEL_KEY_FILE or ZITADEL_KEY), or neither"},
		{"secret and key file", map[string]string{"ZITADEL_CLIENT_SECRET": "s3cr3t-value", "ZITADEL_KEY_FILE": path},
			"ZITADEL_CLIENT_SECRET, ZITADEL_KEY_FILE: set at most one"},
		{"key file and key", map[string]string{"ZITADEL_KEY_FILE": path, "ZITADEL_KEY": string(key.JSON)},
			"ZITADEL_KEY_FILE, ZITADEL_KEY: set at most one"},
		{"all three", map[string]string{"ZITADEL_CLIENT_SECRET": "x", "ZITADEL_KEY_FILE": path, "ZITADEL_KEY": string(key.JSON)},
			"ZITADEL_CLIENT_SECRET, ZITADEL_KEY_FILE, ZITADEL_KEY: set at most one"},
		{"key of another client", map[string]string{"ZITADEL_KEY": string(other.JSON)},
			`ZITADEL_KEY: is the key of client "999999999999999999", but ZITADEL_CLIENT_ID is "` + clientID + `"`},
		{"truncated JSON", map[string]string{"ZITADEL_KEY": truncated}, "ZITADEL_KEY: is not valid JSON"},
		{"missing file", map[string]string{"ZITADEL_KEY_FILE": path + ".missing"}, "ZITADEL_KEY_FILE: cannot read " + path + ".missing: no such file or directory"},
		{"a directory", map[string]string{"ZITADEL_KEY_FILE": filepath.Dir(path)}, "ZITADEL_KEY_FILE: cannot read"},
		{"non-RSA key", map[string]string{"ZITADEL_KEY": string(ecJSON)}, "ZITADEL_KEY: key (keyId 1): is an ECDSA key; ZITADEL application keys are RSA"},
		{"broken PEM", map[string]string{"ZITADEL_KEY": strings.Replace(string(key.JSON), "MII", "###", 1)}, "ZITADEL_KEY: key (keyId " + key.KeyID + "): "},
		{"cache TTL too long", map[string]string{"INTROSPECTION_CACHE_TTL": "2h"}, "INTROSPECTION_CACHE_TTL: must be at most 1h"},
		{"cache TTL no unit", map[string]string{"INTROSPECTION_CACHE_TTL": "60"}, "INTROSPECTION_CACHE_TTL: must be a duration"},
		{"project ID with spaces", map[string]string{"ZITADEL_PROJECT_ID": "123 456"}, "ZITADEL_PROJECT_ID: must be one project ID"},
		{"roles max age no unit", map[string]string{"ROLES_MAX_AGE": "300"}, "ROLES_MAX_AGE: must be a duration"},
		{"roles max age zero", map[string]string{"ROLES_MAX_AGE": "0s"}, "ROLES_MAX_AGE: must be at least 1s"},
		{"roles max age too long", map[string]string{"ROLES_MAX_AGE": "48h"}, "ROLES_MAX_AGE: must be at most 24h"},
	}
	var fields map[string]string
	_ = json.Unmarshal(key.JSON, &fields)
	block, _ := pem.Decode([]byte(fields["key"]))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := valid()
			for k, v := range tc.set {
				env[k] = v
			}
			_, err := load(env, nil)
			var p config.Problems
			if !errors.As(err, &p) || len(p) != 1 || !strings.HasPrefix(p[0], tc.want) {
				t.Fatalf("problems = %q, want one starting with %q", p, tc.want)
			}
			if strings.ContainsAny(p[0], "\n\r") {
				t.Errorf("problem spans lines: %q", p[0])
			}
			for _, secret := range []string{"s3cr3t-value", "PRIVATE KEY", string(block.Bytes[40:60]), fields["key"][40:70]} {
				if strings.Contains(p[0], secret) {
					t.Errorf("the message repeats secret material: %q", p[0])
				}
			}
		})
	}
}

func TestLoad_IntrospectionCacheTTL(t *testing.T) {
	t.Parallel()
	c, err := load(valid(), nil)
	if err != nil || c.IntrospectionCacheTTL != time.Minute {
		t.Fatalf("default: %v, %v", c.IntrospectionCacheTTL, err)
	}
	env := valid()
	env["INTROSPECTION_CACHE_TTL"] = "0s"
	if c, err := load(env, nil); err != nil || c.IntrospectionCacheTTL != 0 {
		t.Fatalf("0s: %v, %v", c.IntrospectionCacheTTL, err)
	}
}

func TestLoad_RolesMaxAge(t *testing.T) {
	t.Parallel()
	c, err := load(valid(), nil)
	if err != nil || c.RolesMaxAge != 5*time.Minute {
		t.Fatalf("default: %v, %v", c.RolesMaxAge, err)
	}
	env := valid()
	env["ROLES_MAX_AGE"] = "30s"
	if c, err := load(env, nil); err != nil || c.RolesMaxAge != 30*time.Second {
		t.Fatalf("30s: %v, %v", c.RolesMaxAge, err)
	}
}
