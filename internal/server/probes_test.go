package server_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The probes are answered in front of the middleware chain; these are the
// parts of the chain they must still have, and the ones they must not.
// Over https they also carry HSTS: TestProbes_CarryHSTSOverHTTPS.
func TestProbes_AnswerInFrontOfTheChain(t *testing.T) {
	t.Parallel()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Options: server.Options{Logger: log}})
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/healthz", http.StatusOK, "ok\n"},
		{http.MethodHead, "/healthz", http.StatusOK, ""},
		{http.MethodGet, "/readyz", http.StatusOK, `"status":"ready"`},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, "Method Not Allowed"},
		{http.MethodDelete, "/readyz", http.StatusMethodNotAllowed, "Method Not Allowed"},
	} {
		rec := httptest.NewRecorder()
		app.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, app.URL+tc.path, nil))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) || (tc.body == "" && rec.Body.Len() != 0) {
			t.Errorf("%s %s = %d %q, want %d with %q", tc.method, tc.path, rec.Code, rec.Body, tc.status, tc.body)
		}
		// A probe's answer is text/plain or JSON that no browser renders
		// as a document: nosniff and no-store are what it needs; the
		// document headers (CSP, framing, ...) would protect nothing.
		h := rec.Header()
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s lacks nosniff or no-store: %v", tc.method, tc.path, h)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q, want text/plain or JSON (nosniff then keeps browsers from rendering it)", tc.method, tc.path, ct)
		}
		if h.Get("Content-Security-Policy") != "" || h.Get("X-Frame-Options") != "" {
			t.Errorf("%s %s carries the document headers: %v", tc.method, tc.path, h)
		}
		if tc.status == http.StatusMethodNotAllowed && h.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, h.Get("Allow"))
		}
	}
	// A page still goes through the chain (access log), a probe does not.
	app.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, app.URL+"/", nil))
	if out := logs.String(); strings.Contains(out, `"route":"/healthz"`) || !strings.Contains(out, `"route":"/"`) {
		t.Errorf("access log should have the page and no probe:\n%s", out)
	}
}

func TestProbes_CarryHSTSOverHTTPS(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config("http://127.0.0.1:3000", &testenv.IdP{URL: "http://127.0.0.1:1"})
	cfg.CallbackURL = "https://gatehouse.example/auth/callback"
	app, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		app.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := rec.Header().Get("Strict-Transport-Security"); got != "max-age=63072000; includeSubDomains" {
			t.Errorf("%s over https: Strict-Transport-Security = %q", path, got)
		}
	}
}
