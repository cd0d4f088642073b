package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestAdmin_ProfilerOnlyWhenAskedAndNeverPublic(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		cfg := testenv.Config("http://127.0.0.1:3000", &testenv.IdP{URL: "http://127.0.0.1:1"})
		cfg.AdminPprof = on
		app, err := server.New(cfg, server.Options{})
		if err != nil {
			t.Fatal(err)
		}
		admin := httptest.NewRecorder()
		app.AdminServer().Handler.ServeHTTP(admin, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		served := admin.Code == http.StatusOK && strings.Contains(admin.Body.String(), "goroutine")
		if served != on {
			t.Errorf("ADMIN_PPROF=%v: admin /debug/pprof/ = %d", on, admin.Code)
		}
		public := httptest.NewRecorder()
		app.Handler().ServeHTTP(public, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if public.Code != http.StatusNotFound || strings.Contains(public.Body.String(), "goroutine") {
			t.Errorf("ADMIN_PPROF=%v: public /debug/pprof/ = %d, want 404", on, public.Code)
		}
	}
}
