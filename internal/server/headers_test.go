package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestSecurityHeaders_OnEveryResponse: every page, error and static file
// (the probes have their own set: TestProbes_AnswerInFrontOfTheChain).
func TestSecurityHeaders_OnEveryResponse(t *testing.T) {
	t.Parallel()
	idp := testenv.StartIdP(t, testenv.IdPOptions{})
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' " + idp.URL
	always := map[string]string{
		"Content-Security-Policy":    csp,
		"X-Frame-Options":            "DENY",
		"X-Content-Type-Options":     "nosniff",
		"Referrer-Policy":            "same-origin",
		"Permissions-Policy":         "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
		"Cross-Origin-Opener-Policy": "same-origin",
	}
	for _, tc := range []struct {
		name, callback, path string
		status               int
		sts, cache           string
	}{
		{"HTTPLanding", "http://127.0.0.1:3000/auth/callback", "/", http.StatusOK, "", "no-store"},
		{"HTTPNotFound", "http://127.0.0.1:3000/auth/callback", "/nope", http.StatusNotFound, "", "no-store"},
		{"HTTPStatic", "http://127.0.0.1:3000/auth/callback", "/static/app.css", http.StatusOK, "", "public, max-age=3600"},
		{"HTTPConfigButTLSConnection", "http://127.0.0.1:3000/auth/callback", "https://127.0.0.1:3000/auth/signin", http.StatusOK,
			"max-age=63072000; includeSubDomains", "no-store"},
		{"HTTPSProtectedRedirect", "https://gatehouse.example/auth/callback", "/profile", http.StatusSeeOther,
			"max-age=63072000; includeSubDomains", "no-store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testenv.Config("http://127.0.0.1:3000", idp)
			cfg.CallbackURL = tc.callback
			app, err := server.New(cfg, server.Options{})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			app.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if w.Code != tc.status {
				t.Fatalf("GET %s = %d, want %d", tc.path, w.Code, tc.status)
			}
			h := w.Result().Header
			for k, want := range always {
				if got := h.Values(k); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want exactly %q", k, got, want)
				}
			}
			if got := h.Get("Strict-Transport-Security"); got != tc.sts {
				t.Errorf("Strict-Transport-Security = %q, want %q", got, tc.sts)
			}
			if got := h.Values("Cache-Control"); len(got) != 1 || got[0] != tc.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tc.cache)
			}
		})
	}
}
