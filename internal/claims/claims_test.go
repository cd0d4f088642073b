package claims

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/gatehouse/gatehouse/internal/session"
)

func jwtWith(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func TestProfileOf_ReadsZitadelClaims(t *testing.T) {
	t.Parallel()
	idt := jwtWith(t, map[string]any{
		"sub":   "u1",
		"nonce": "spent-nonce",
		"urn:zitadel:iam:org:project:roles": map[string]any{
			"admin": map[string]any{"org1": "acme.example"},
		},
		"urn:zitadel:iam:org:project:42:roles": map[string]any{
			"admin":  map[string]any{"org2": "other.example"},
			"viewer": map[string]any{"org1": "acme.example"},
		},
		"urn:zitadel:iam:user:resourceowner:id":             "org1",
		"urn:zitadel:iam:user:resourceowner:name":           "ACME",
		"urn:zitadel:iam:user:resourceowner:primary_domain": "acme.example",
	})
	ui := []byte(`{"sub":"u1","name":"Ada Lovelace","email":"ada@acme.example",
		"urn:zitadel:iam:user:metadata":{"team":"` + base64.StdEncoding.EncodeToString([]byte("platform")) + `"}}`)
	p := ProfileOf(&session.Session{Subject: "u1", IDToken: idt, Userinfo: ui, ExpiresAt: 100})

	if p.Name != "Ada Lovelace" || p.Email != "ada@acme.example" {
		t.Errorf("name/email from userinfo: %q %q", p.Name, p.Email)
	}
	if p.Org != (Org{ID: "org1", Name: "ACME", Domain: "acme.example"}) {
		t.Errorf("Org = %+v", p.Org)
	}
	if len(p.Roles) != 2 || p.Roles[0].Name != "admin" || len(p.Roles[0].Orgs) != 2 || p.Roles[1].Name != "viewer" {
		t.Errorf("Roles = %+v, want admin (two orgs, merged from both claim forms) and viewer", p.Roles)
	}
	if !p.HasRole("viewer") || p.HasRole("root") {
		t.Error("HasRole wrong")
	}
	if len(p.Metadata) != 1 || p.Metadata[0] != (Metadata{Key: "team", Value: "platform"}) {
		t.Errorf("Metadata = %+v, want base64 decoded", p.Metadata)
	}
	if _, ok := p.Claims["nonce"]; ok {
		t.Error("the nonce is shown among the claims")
	}
}

func TestProfileOf_SurvivesGarbage(t *testing.T) {
	t.Parallel()
	for _, idt := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte("[1,2]")) + ".c"} {
		p := ProfileOf(&session.Session{Subject: "u", IDToken: idt, Userinfo: []byte("not json")})
		if p.Subject != "u" {
			t.Errorf("IDToken %q: Subject = %q", idt, p.Subject)
		}
	}
}
