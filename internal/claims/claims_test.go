package claims

import (
	"encoding/base64"
	"encoding/json"
	"strings"
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
	p := ProfileOf(&session.Session{Subject: "u1", IDToken: idt, Userinfo: ui, ExpiresAt: 100}, "42")

	if p.Name != "Ada Lovelace" || p.Email != "ada@acme.example" {
		t.Errorf("name/email from userinfo: %q %q", p.Name, p.Email)
	}
	if p.Org != (Org{ID: "org1", Name: "ACME", Domain: "acme.example"}) {
		t.Errorf("Org = %+v", p.Org)
	}
	if len(p.Roles) != 2 || p.Roles[0].Name != "admin" || len(p.Roles[0].Orgs) != 1 || p.Roles[0].Orgs[0] != "other.example (org2)" || p.Roles[1].Name != "viewer" {
		t.Errorf("Roles = %+v, want project 42's: admin (org2 only) and viewer", p.Roles)
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
		p := ProfileOf(&session.Session{Subject: "u", IDToken: idt, Userinfo: []byte("not json")}, "")
		if p.Subject != "u" {
			t.Errorf("IDToken %q: Subject = %q", idt, p.Subject)
		}
	}
}

func TestRoles_OnlyTheConfiguredProjectsClaim(t *testing.T) {
	t.Parallel()
	grant := func(role string) map[string]any { return map[string]any{role: map[string]any{"o1": "acme.example"}} }
	idt := jwtWith(t, map[string]any{
		"sub":                                  "u1",
		"urn:zitadel:iam:org:project:roles":    grant("viewer"),
		"urn:zitadel:iam:org:project:42:roles": grant("viewer"),
		"urn:zitadel:iam:org:project:99:roles": grant("admin"),
	})
	names := func(rs []Role) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name, project, userinfo string
		rolesAt                 int64
		want                    string
	}{
		{"NoProjectGenericClaim", "", "", 0, "viewer"},
		{"ProjectItsOwnClaim", "42", "", 0, "viewer"},
		{"OtherProject", "99", "", 0, "admin"},
		{"UnknownProject", "7", "", 0, ""},
		// Once read from userinfo, userinfo alone says: a removed grant
		// is gone even though the (older) ID token still lists it.
		{"UserinfoRemovedTheRole", "", `{"sub":"u1"}`, 1, ""},
		{"UserinfoChangedTheRole", "42", `{"urn:zitadel:iam:org:project:42:roles":{"editor":{"o1":"acme.example"}}}`, 1, "editor"},
		{"LegacySessionMergesBoth", "", `{"urn:zitadel:iam:org:project:roles":{"editor":{"o1":"acme.example"}}}`, 0, "editor"},
	} {
		s := &session.Session{Subject: "u1", IDToken: idt, Userinfo: []byte(tc.userinfo), RolesAt: tc.rolesAt}
		if got := names(Roles(s, tc.project)); got != tc.want {
			t.Errorf("%s: Roles = %q, want %q", tc.name, got, tc.want)
		}
		if got := names(ProfileOf(s, tc.project).Roles); got != tc.want {
			t.Errorf("%s: ProfileOf().Roles = %q, want %q (the same lookup)", tc.name, got, tc.want)
		}
	}
	if RolesClaim("") != "urn:zitadel:iam:org:project:roles" || RolesClaim("42") != "urn:zitadel:iam:org:project:42:roles" {
		t.Error("RolesClaim")
	}
}
