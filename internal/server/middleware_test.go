package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
)

// The recoverer sits outside the router; its log line must still name the
// route that panicked (found on the access log's writer).
func TestRecoverer_PanicLineNamesTheRoute(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	r := mux.NewRouter()
	r.Handle("/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })).Methods(http.MethodGet)
	nameRoutes(r)
	w := httptest.NewRecorder()
	accessLog(log, false)(recoverer(log)(r)).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", w.Code)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"panic in handler","route":"/boom"`) || !strings.Contains(lines[1], `"route":"/boom"`) {
		t.Fatalf("log lines:\n%s", buf.String())
	}
}
