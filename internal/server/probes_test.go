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
		h := rec.Header()
		if h.Get("Content-Security-Policy") == "" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s lacks the security or no-store headers: %v", tc.method, tc.path, h)
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
