package forwardauth_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
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
		Config: forwardauth.Config{PublicOrigin: "https://login.example.com", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Now:    func() time.Time { return now },
	})
	ask := func(i int) {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/auth/forward?x%d=1", i), nil)
		r.RemoteAddr = "203.0.113.9:50000" // the proxy, configured with rules Gatehouse cannot read
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

// TestMisconfigured_OutsiderIsRejectedNotAMisconfiguredProxy: the decision
// endpoints are on the public listener; anyone's /auth/verify?x is no
// proxy's request. It gets a 400 and counts as rejected, never as the
// misconfigured outcome the operators' alert watches, and logs nothing.
func TestMisconfigured_OutsiderIsRejectedNotAMisconfiguredProxy(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	e := forwardauth.New(forwardauth.Deps{
		Config: forwardauth.Config{PublicOrigin: "https://login.example.com", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for _, target := range []string{"/auth/verify?x", "/auth/forward?utm_source=mail", "/auth/forward;junk/x"} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = "198.51.100.9:50000" // from the internet, not a proxy
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest || w.Header().Get("X-Auth-Request-User") != "" {
			t.Errorf("%s from the internet: %d %v, want 400", target, w.Code, w.Header())
		}
	}
	if logs.Len() != 0 {
		t.Errorf("an outsider's request was logged as a configuration error:\n%s", logs.String())
	}
}
