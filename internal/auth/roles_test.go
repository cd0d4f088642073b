package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/web"
)

// sessionWith is a session whose (already verified, then sealed) ID token
// carries claims; claims.ProfileOf reads the payload only.
func sessionWith(t *testing.T, claims map[string]any) *session.Session {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return &session.Session{ID: "s", Subject: "u1", IDToken: "e30." + base64.RawURLEncoding.EncodeToString(b) + ".sig"}
}

func TestRequireRole_ReadsTheConfiguredProjectsRoleClaim(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	sealer, err := seal.New("roles-test-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		t.Fatal(err)
	}
	store := session.NewCookieStore(sealer, session.CookieOptions{}, clock)
	rpFor := func(project string) *auth.RelyingParty {
		return auth.New(auth.Deps{Sessions: store, Pages: web.NewPages(slog.New(slog.DiscardHandler)), Now: clock,
			Tracer: noop.NewTracerProvider().Tracer("t"), Config: auth.Config{IdleTimeout: time.Hour, ProjectID: project}})
	}
	noProject, project := rpFor(""), rpFor("123456")
	grant := map[string]any{"admin": map[string]any{"org1": "org1.example"}}
	cases := []struct {
		name    string
		rp      *auth.RelyingParty
		claims  map[string]any // nil: no session at all
		allowed bool
	}{
		{"GenericClaim", noProject, map[string]any{"urn:zitadel:iam:org:project:roles": grant}, true},
		// With ZITADEL_PROJECT_ID, that project's claim and no other:
		// claims.ProjectRoles, as for bearer tokens.
		{"ConfiguredProjectsClaim", project, map[string]any{"urn:zitadel:iam:org:project:123456:roles": grant}, true},
		{"GenericClaimWithAProjectConfigured", project, map[string]any{"urn:zitadel:iam:org:project:roles": grant}, false},
		{"AnotherProjectsClaim", project, map[string]any{"urn:zitadel:iam:org:project:999:roles": grant}, false},
		{"ProjectClaimWithoutAProjectConfigured", noProject, map[string]any{"urn:zitadel:iam:org:project:123456:roles": grant}, false},
		{"OtherRoleOnly", noProject, map[string]any{"urn:zitadel:iam:org:project:roles": map[string]any{"viewer": map[string]any{"org1": "x"}}}, false},
		{"NoRoles", noProject, map[string]any{"sub": "u1"}, false},
		{"ArrayShapeIsNotAGrant", noProject, map[string]any{"urn:zitadel:iam:org:project:roles": []any{"admin"}}, false},
		{"LookalikeClaimIgnored", noProject, map[string]any{"urn:zitadel:iam:org:project:roles:evil": grant, "admin": true}, false},
		{"RoleInUserinfoOnly", noProject, map[string]any{"userinfo:urn:zitadel:iam:org:project:roles": grant}, true},
		{"NoSession", noProject, nil, false}, // sent to sign in
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reached := false
			h := tc.rp.RequireRole("admin")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			r := httptest.NewRequest(http.MethodGet, "/admin", nil)
			if tc.claims != nil {
				var s *session.Session
				if ui, ok := tc.claims["userinfo:urn:zitadel:iam:org:project:roles"]; ok {
					s = sessionWith(t, map[string]any{"sub": "u1"})
					s.Userinfo, _ = json.Marshal(map[string]any{"urn:zitadel:iam:org:project:roles": ui})
				} else {
					s = sessionWith(t, tc.claims)
				}
				s.CreatedAt, s.LastSeen, s.ExpiresAt = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
				w := httptest.NewRecorder()
				if err := store.Save(w, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
					t.Fatal(err)
				}
				r.AddCookie(w.Result().Cookies()[0])
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if reached != tc.allowed {
				t.Fatalf("handler reached = %v, want %v", reached, tc.allowed)
			}
			switch {
			case tc.claims == nil && (rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/auth/signin")):
				t.Fatalf("no session: status %d to %q, want sent to sign in", rec.Code, rec.Header().Get("Location"))
			case tc.claims != nil && !tc.allowed && (rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "do not have access")):
				t.Fatalf("refused: status %d, want the friendly 403 page", rec.Code)
			}
		})
	}
}
