package forwardauth_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/forwardauth"
)

// TestMisconfigured_ClientChosenTextLogsOncePerCause: an invalid rule
// quotes the query, which anybody can vary; the warning is still written
// once a minute per cause, not once per request, and a minute later again.
func TestMisconfigured_ClientChosenTextLogsOncePerCause(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	now := time.Unix(1_700_000_000, 0)
	e := forwardauth.New(forwardauth.Deps{
		Config: forwardauth.Config{PublicOrigin: "https://login.example.com"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Now:    func() time.Time { return now },
	})
	ask := func(i int) {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/auth/forward?x%d=1", i), nil)
		r.RemoteAddr = "203.0.113.9:50000"
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != http.StatusInternalServerError {
			t.Fatalf("invalid rules: status %d, want 500", w.Code)
		}
	}
	const warning = "forward-auth: configuration error"
	for i := range 2000 { // more than the throttle's keys
		ask(i)
	}
	if got := strings.Count(logs.String(), warning); got != 1 {
		t.Fatalf("%d warnings within one minute for one cause (invalid_rules), want 1", got)
	}
	now = now.Add(time.Minute)
	ask(-1)
	if got := strings.Count(logs.String(), warning); got != 2 {
		t.Fatalf("%d warnings after a minute, want 2: the cause is still there", got)
	}
}
