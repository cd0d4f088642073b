package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// FuzzCallbackQuery sends arbitrary callback queries to the real handler
// chain, with a real provider behind it. "STATE" in the query is replaced
// by the state of a sign-in this browser really started (so the fuzzer
// gets past the state check into code exchange, iss checks and error
// handling). Whatever the query: no panic, no 5xx other than 503, no
// session, no redirect off the site, and the state is never echoed.
func FuzzCallbackQuery(f *testing.F) {
	_, app := testenv.Setup(f, testenv.IdPOptions{}, testenv.AppOptions{})
	h := app.Handler()
	for _, q := range []string{
		"code=x&state=STATE", "state=STATE", "code=&state=STATE", "code=x&state=STATE&iss=http%3A%2F%2Fevil.example",
		"code=x&state=STATE&iss=" + url.QueryEscape(app.Config.Issuer), "code=x&state=STATE&state=other",
		"error=access_denied&state=STATE", "error=server_error&error_description=%3Cscript%3E&state=STATE",
		"error=access_denied", "code=x&state=forged", "", "%zz", "state=STATE;code=x", "code=x&state=STATE&iss=&iss=",
		"state=" + strings.Repeat("S", 600),
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		// A sign-in started in this browser: its flow cookie and state.
		start := httptest.NewRequest(http.MethodPost, app.URL+"/auth/signin/zitadel", strings.NewReader(""))
		start.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		start.Header.Set("Sec-Fetch-Site", "same-origin")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, start)
		loc, err := url.Parse(rec.Header().Get("Location"))
		if rec.Code != http.StatusSeeOther || err != nil {
			t.Fatalf("sign-in = %d", rec.Code)
		}
		state := loc.Query().Get("state")
		cookies := rec.Result().Cookies()

		rawQuery = strings.ReplaceAll(rawQuery, "STATE", url.QueryEscape(state))
		req := httptest.NewRequest(http.MethodGet, app.URL+"/auth/callback", nil)
		req.URL.RawQuery = rawQuery
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("callback ?%q = %d", rawQuery, rec.Code)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == session.CookieName(false) && c.MaxAge > 0 {
				t.Fatalf("callback ?%q started a session", rawQuery)
			}
		}
		if l := rec.Header().Get("Location"); l != "" && (!strings.HasPrefix(l, "/") || strings.HasPrefix(l, "//") || strings.HasPrefix(l, "/\\")) {
			t.Fatalf("callback ?%q redirects to %q", rawQuery, l)
		}
		if strings.Contains(rec.Body.String(), state) {
			t.Fatalf("callback ?%q echoes the state in its page", rawQuery)
		}
	})
}
