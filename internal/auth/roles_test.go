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

func TestRequireRole_ReadsTheProjectsRolesClaim(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	sealer, err := seal.New("roles-test-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		t.Fatal(err)
	}
	store := session.NewCookieStore(sealer, session.CookieOptions{}, clock)
	party := func(project string) *auth.RelyingParty {
		return auth.New(auth.Deps{Sessions: store, Pages: web.NewPages(slog.New(slog.DiscardHandler)), Now: clock,
			Tracer: noop.NewTracerProvider().Tracer("t"), Config: auth.Config{IdleTimeout: time.Hour, ProjectID: project}})
	}
	grant := map[string]any{"admin": map[string]any{"org1": "org1.example"}}
	cases := []struct {
		name     string
		project  string
		userinfo map[string]any // nil: no session at all
		idToken  map[string]any
		allowed  bool
	}{
		{"GenericClaim", "", map[string]any{"urn:zitadel:iam:org:project:roles": grant}, nil, true},
		{"ConfiguredProjectsClaim", "123456", map[string]any{"urn:zitadel:iam:org:project:123456:roles": grant}, nil, true},
		{"AnotherProjectsClaim", "", map[string]any{"urn:zitadel:iam:org:project:123456:roles": grant}, nil, false},
		{"AnotherProjectsClaimWithProject", "777", map[string]any{"urn:zitadel:iam:org:project:123456:roles": grant}, nil, false},
		{"GenericClaimWithProject", "777", map[string]any{"urn:zitadel:iam:org:project:roles": grant}, nil, false},
		{"OtherRoleOnly", "", map[string]any{"urn:zitadel:iam:org:project:roles": map[string]any{"viewer": map[string]any{"org1": "x"}}}, nil, false},
		{"NoRoles", "", map[string]any{"sub": "u1"}, nil, false},
		{"ArrayShapeIsNotAGrant", "", map[string]any{"urn:zitadel:iam:org:project:roles": []any{"admin"}}, nil, false},
		{"LookalikeClaimIgnored", "", map[string]any{"urn:zitadel:iam:org:project:roles:evil": grant, "admin": true}, nil, false},
		// Userinfo read since the ID token was issued: its word counts.
		{"RoleLeftOnlyInTheOlderIDToken", "", map[string]any{"sub": "u1"}, map[string]any{"urn:zitadel:iam:org:project:roles": grant}, false},
		{"NoSession", "", nil, nil, false}, // sent to sign in
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reached := false
			h := party(tc.project).RequireRole("admin")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			r := httptest.NewRequest(http.MethodGet, "/admin", nil)
			if tc.userinfo != nil {
				idt := tc.idToken
				if idt == nil {
					idt = map[string]any{"sub": "u1"}
				}
				s := sessionWith(t, idt)
				s.Userinfo, _ = json.Marshal(tc.userinfo)
				s.CreatedAt, s.LastSeen, s.ExpiresAt, s.RolesAt = now.Unix(), now.Unix(), now.Add(time.Hour).Unix(), now.Unix()
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
			case tc.userinfo == nil && (rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/auth/signin")):
				t.Fatalf("no session: status %d to %q, want sent to sign in", rec.Code, rec.Header().Get("Location"))
			case tc.userinfo != nil && !tc.allowed && (rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "do not have access")):
				t.Fatalf("refused: status %d, want the friendly 403 page", rec.Code)
			}
		})
	}
}
