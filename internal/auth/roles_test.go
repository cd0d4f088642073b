package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/web"
)

// sessionWith is a session whose (already verified, then sealed) ID token
// carries claims; ProfileOf reads the payload only.
func sessionWith(t *testing.T, claims map[string]any) *session.Session {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return &session.Session{ID: "s", Subject: "u1", IDToken: "e30." + base64.RawURLEncoding.EncodeToString(b) + ".sig"}
}

func TestRequireRole_ReadsBothZitadelRoleClaims(t *testing.T) {
	t.Parallel()
	pages, err := web.NewPages(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	flow := auth.New(auth.Deps{Pages: pages, Logger: slog.New(slog.DiscardHandler), Tracer: noop.NewTracerProvider().Tracer("t")})
	grant := map[string]any{"admin": map[string]any{"org1": "org1.example"}}
	cases := []struct {
		name    string
		claims  map[string]any // nil: no session at all
		allowed bool
	}{
		{"GenericClaim", map[string]any{"urn:zitadel:iam:org:project:roles": grant}, true},
		{"ProjectClaim", map[string]any{"urn:zitadel:iam:org:project:123456:roles": grant}, true},
		{"OtherRoleOnly", map[string]any{"urn:zitadel:iam:org:project:roles": map[string]any{"viewer": map[string]any{"org1": "x"}}}, false},
		{"NoRoles", map[string]any{"sub": "u1"}, false},
		{"ArrayShapeIsNotAGrant", map[string]any{"urn:zitadel:iam:org:project:roles": []any{"admin"}}, false},
		{"LookalikeClaimIgnored", map[string]any{"urn:zitadel:iam:org:project:roles:evil": grant, "admin": true}, false},
		{"RoleInUserinfoOnly", map[string]any{"userinfo:urn:zitadel:iam:org:project:roles": grant}, true},
		{"NoSession", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reached := false
			h := flow.RequireRole("admin")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
			r := httptest.NewRequest(http.MethodGet, "/admin", nil)
			if tc.claims != nil {
				var s *session.Session
				if ui, ok := tc.claims["userinfo:urn:zitadel:iam:org:project:roles"]; ok {
					s = sessionWith(t, map[string]any{"sub": "u1"})
					s.Userinfo, _ = json.Marshal(map[string]any{"urn:zitadel:iam:org:project:roles": ui})
				} else {
					s = sessionWith(t, tc.claims)
				}
				r = r.WithContext(auth.WithSession(r.Context(), s))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if reached != tc.allowed {
				t.Fatalf("handler reached = %v, want %v", reached, tc.allowed)
			}
			if !tc.allowed && (rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "do not have access")) {
				t.Fatalf("refused: status %d, want the friendly 403 page", rec.Code)
			}
		})
	}
}
