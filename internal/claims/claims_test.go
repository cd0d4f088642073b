package claims

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/forward"
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

func TestProjectRoles_OnlyTheConfiguredProjectsClaim(t *testing.T) {
	t.Parallel()
	grant := func(role string) map[string]any { return map[string]any{role: map[string]any{"o1": "acme.example"}} }
	c := map[string]any{
		"urn:zitadel:iam:org:project:roles":    grant("viewer"),
		"urn:zitadel:iam:org:project:42:roles": grant("editor"),
		"urn:zitadel:iam:org:project:99:roles": grant("admin"),
	}
	for _, tc := range []struct{ project, want string }{
		{"", "viewer"},      // the generic claim: the roles in the token's own project
		{"42", "editor"},    // the configured project's, never the generic claim's
		{"99", "admin"},     // whichever project is configured
		{"7", ""},           // a project with no grant: none
		{"4", ""},           // no prefix matching
		{"42:roles", ""},    // no claim-name games
		{"roles:evil", ""},  // ditto
		{"042", ""},         // exact
		{" 42", ""},         // exact
		{"urn:zitadel", ""}, // exact
	} {
		got := strings.Join(ProjectRoles(c, tc.project).Names(), ",")
		if got != tc.want {
			t.Errorf("project %q: roles %q, want %q", tc.project, got, tc.want)
		}
	}
	if RolesClaim("") != "urn:zitadel:iam:org:project:roles" || RolesClaim("42") != "urn:zitadel:iam:org:project:42:roles" {
		t.Error("RolesClaim")
	}
	// Wrong shapes grant no organisation, and never panic.
	for _, v := range []any{nil, "admin", []any{"admin"}, map[string]any{"admin": "o1"}, 42.0} {
		roles := ProjectRoles(map[string]any{"urn:zitadel:iam:org:project:roles": v}, "")
		if roles == nil || roles.Names() == nil {
			t.Errorf("%v: nil roles", v)
		}
		for name, orgs := range roles {
			if len(orgs) != 0 {
				t.Errorf("%v: role %q granted by %v", v, name, orgs)
			}
		}
	}
}

func TestIdentityOf_ReadsWhatDecisionsNeed(t *testing.T) {
	t.Parallel()
	c := map[string]any{
		"email": "ada@acme.example", "preferred_username": "ada", "urn:zitadel:iam:user:resourceowner:id": "o1",
		"urn:zitadel:iam:org:project:42:roles": map[string]any{
			"viewer": map[string]any{"o1": "acme.example"},
			"admin":  map[string]any{"o2": "other.example"},
		},
	}
	id := IdentityOf("u1", c, "42")
	if id.Subject != "u1" || id.Email != "ada@acme.example" || id.PreferredUsername != "ada" || id.OrgID != "o1" {
		t.Errorf("identity %+v", id)
	}
	if strings.Join(id.RoleNames, ",") != "admin,viewer" || !id.HasRole("admin") || id.HasRole("owner") ||
		!id.HasRoleInOrg("admin", "o2") || id.HasRoleInOrg("admin", "o1") {
		t.Errorf("roles %v", id.Roles)
	}
	if s := id.RuleSubject(); s.OrgID != "o1" || len(s.Roles) != 2 {
		t.Errorf("rule subject %+v", s)
	}
	if none := IdentityOf("u1", map[string]any{"email": 7}, ""); none.Email != "" || len(none.RoleNames) != 0 || none.Roles == nil {
		t.Errorf("garbage: %+v", none)
	}
}

func TestRoleSets_EqualGrantsShareOneCopy(t *testing.T) {
	t.Parallel()
	claimsWith := func(orgs map[string]any) map[string]any {
		return map[string]any{"urn:zitadel:iam:org:project:roles": map[string]any{"admin": orgs, "viewer": orgs}}
	}
	acme := map[string]any{"o1": "acme.example"}
	rs := NewRoleSets(2)
	a, b := IdentityOf("a", claimsWith(acme), ""), IdentityOf("b", claimsWith(acme), "")
	other := IdentityOf("c", claimsWith(map[string]any{"o2": "other.example"}), "")
	rs.Share(a)
	rs.Share(b)
	rs.Share(other)
	if &a.RoleNames[0] != &b.RoleNames[0] || fmt.Sprintf("%p", a.Roles) != fmt.Sprintf("%p", b.Roles) {
		t.Error("equal grants were not shared")
	}
	if fmt.Sprintf("%p", other.Roles) == fmt.Sprintf("%p", a.Roles) || other.HasRoleInOrg("admin", "o1") || !other.HasRoleInOrg("admin", "o2") {
		t.Errorf("other grants mixed up: %v", other.Roles)
	}
	// Full: a new set stays the identity's own, and still right.
	third := IdentityOf("d", claimsWith(map[string]any{"o3": "third.example"}), "")
	rs.Share(third)
	if !third.HasRoleInOrg("viewer", "o3") || len(rs.sets) != 2 {
		t.Errorf("past the bound: %v, %d sets", third.Roles, len(rs.sets))
	}
}

// TestRoleSets_SeparatorsInGrantsNeverShareAnotherSet: role keys and
// organisation domains come from the provider's claims and may contain
// any character. Sets whose old separator-joined keys were equal must get
// different keys, and a set seen first must never be handed to another.
func TestRoleSets_SeparatorsInGrantsNeverShareAnotherSet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		first, second forward.Roles
		notGranted    string // a role the second identity must not get
	}{
		{"domain holding a second grant", forward.Roles{"a": {"1": "d"}, "admin": {"2": "e"}}, forward.Roles{"a": {"1": "d,;admin=2:e"}}, "admin"},
		{"role name holding a second grant", forward.Roles{"a": {"1": "d"}, "b": {"2": "e"}}, forward.Roles{"a=1:d,;b": {"2": "e"}}, "b"},
		{"org ID holding a domain", forward.Roles{"a": {"1:x,2": "y"}}, forward.Roles{"a": {"1": "x,2:y"}}, ""},
		{"length digits in a name", forward.Roles{"1:a": {"1": "b"}}, forward.Roles{"1": {"1": "b"}, "a": {"1": "b"}}, "1:a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			first := &Identity{Subject: "first", Roles: tc.first, RoleNames: tc.first.Names()}
			second := &Identity{Subject: "second", Roles: tc.second, RoleNames: tc.second.Names()}
			if k1, k2 := roleSetKey(first.Roles, first.RoleNames), roleSetKey(second.Roles, second.RoleNames); k1 == k2 {
				t.Errorf("one key %q for %v and %v", k1, tc.first, tc.second)
			}
			rs := NewRoleSets(4)
			rs.Share(first)
			rs.Share(second)
			if !maps.EqualFunc(second.Roles, tc.second, maps.Equal[map[string]string, map[string]string]) || !slices.Equal(second.RoleNames, tc.second.Names()) {
				t.Errorf("second identity holds %v (%v), want its own %v", second.Roles, second.RoleNames, tc.second)
			}
			if tc.notGranted != "" && second.HasRole(tc.notGranted) {
				t.Errorf("second identity was granted %q", tc.notGranted)
			}
		})
	}
}

// TestRoleSets_KeyCollisionIsNotShared: Share compares the sets a key
// found, so even a key that two sets share cannot mix them up.
func TestRoleSets_KeyCollisionIsNotShared(t *testing.T) {
	t.Parallel()
	rs := NewRoleSets(4)
	admin := &Identity{Roles: forward.Roles{"admin": {"1": "a"}}}
	admin.RoleNames = admin.Roles.Names()
	rs.Share(admin)
	viewer := &Identity{Roles: forward.Roles{"viewer": {"1": "a"}}}
	viewer.RoleNames = viewer.Roles.Names()
	rs.sets[roleSetKey(viewer.Roles, viewer.RoleNames)] = rs.sets[roleSetKey(admin.Roles, admin.RoleNames)] // a forced collision
	rs.Share(viewer)
	if viewer.HasRole("admin") || !viewer.HasRole("viewer") {
		t.Errorf("viewer now holds %v", viewer.RoleNames)
	}
}

func TestSessionIdentity_RolesAsSessionRolesReadsThem(t *testing.T) {
	t.Parallel()
	grant := map[string]any{"admin": map[string]any{"o1": "acme.example"}}
	idt := jwtWith(t, map[string]any{"sub": "u1", "email": "ada@acme.example", "urn:zitadel:iam:org:project:42:roles": grant})
	// Roles read from userinfo since the ID token was issued: userinfo
	// alone counts, as for every other session lookup.
	s := &session.Session{Subject: "u1", IDToken: idt, Userinfo: []byte(`{"sub":"u1"}`), RolesAt: 1}
	if id := SessionIdentity(s, "42"); id.Subject != "u1" || id.Email != "ada@acme.example" || len(id.RoleNames) != 0 || id.Roles == nil {
		t.Errorf("roles re-read and gone: %+v", id)
	}
	s.RolesAt = 0
	if id := SessionIdentity(s, "42"); !id.HasRoleInOrg("admin", "o1") {
		t.Errorf("legacy session, ID token's roles: %+v", id)
	}
	if id := SessionIdentity(s, ""); id.HasRole("admin") {
		t.Errorf("another project's claim counted: %+v", id)
	}
}
