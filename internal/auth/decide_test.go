package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
)

var testNow = time.Unix(1_800_000_000, 0)

// pages records what the relying party asked to show.
type pages struct {
	status int
	code   string
}

func (p *pages) Message(w http.ResponseWriter, _ *http.Request, status int, code string) {
	p.status, p.code = status, code
	w.WriteHeader(status)
}
func (p *pages) EndSession(http.ResponseWriter, *http.Request, string, []Field) {}

// unreachableStore stands in for a store whose backend is down (the Redis
// outage tests in internal/server cause that for real).
type unreachableStore struct{ session.Store }

func (unreachableStore) Load(*http.Request) (*session.Session, error) {
	return nil, fmt.Errorf("%w: dial tcp: connection refused", session.ErrUnavailable)
}

func testParty(t *testing.T, st session.Store, cfg Config) (*RelyingParty, *pages) {
	t.Helper()
	p := &pages{}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	return New(Deps{Sessions: st, Pages: p, Config: cfg, Now: func() time.Time { return testNow }}), p
}

func cookieStore(t *testing.T) session.Store {
	t.Helper()
	s, err := seal.New("decide-test-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		t.Fatal(err)
	}
	return session.NewCookieStore(s, session.CookieOptions{}, func() time.Time { return testNow })
}

// withSession is a request carrying s's cookie.
func withSession(t *testing.T, st session.Store, s *session.Session) *http.Request {
	t.Helper()
	w := httptest.NewRecorder()
	if err := st.Save(w, httptest.NewRequest(http.MethodGet, "/", nil), s); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/admin?x=1", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	return r
}

func TestDecide_Outcomes(t *testing.T) {
	t.Parallel()
	admin := `{"urn:zitadel:iam:org:project:roles":{"admin":{"o1":"acme.example"}}}`
	for _, tc := range []struct {
		name     string
		session  func(s *session.Session) // nil: no session cookie
		store    func(session.Store) session.Store
		roles    []string
		outcome  Outcome
		reason   string
		newValue bool // a new session cookie is set
	}{
		{name: "NoCookie", outcome: Unauthenticated, reason: ReasonNoSession},
		{name: "Valid", session: func(*session.Session) {}, outcome: Allowed},
		{name: "ValidWithRole", session: func(s *session.Session) { s.Userinfo = []byte(admin) }, roles: []string{"viewer", "admin"}, outcome: Allowed},
		{name: "WithoutRole", session: func(*session.Session) {}, roles: []string{"admin"}, outcome: Forbidden, reason: ReasonForbidden},
		{name: "PastAbsoluteEnd", session: func(s *session.Session) { s.ExpiresAt = testNow.Unix() }, outcome: Unauthenticated, reason: ReasonSessionExpired},
		{name: "IdleTooLong", session: func(s *session.Session) { s.LastSeen = testNow.Add(-31 * time.Minute).Unix() }, outcome: Unauthenticated, reason: ReasonSessionExpired},
		{name: "IdleStampDue", session: func(s *session.Session) { s.LastSeen = testNow.Add(-2 * time.Minute).Unix() }, outcome: Allowed, newValue: true},
		{name: "RefreshDueWithoutRefreshToken", session: func(s *session.Session) { s.AccessExpiry, s.RefreshToken = testNow.Unix(), "" }, outcome: Unauthenticated, reason: ReasonRefreshFailed},
		{name: "StoreDown", session: func(*session.Session) {}, store: func(st session.Store) session.Store { return unreachableStore{st} }, outcome: Unavailable, reason: ReasonSessionStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := cookieStore(t)
			r := httptest.NewRequest(http.MethodGet, "/admin", nil)
			if tc.session != nil {
				s := &session.Session{ID: session.NewID(), Subject: "u1", AccessToken: "at",
					CreatedAt: testNow.Unix(), LastSeen: testNow.Unix(), ExpiresAt: testNow.Add(time.Hour).Unix(), RolesAt: testNow.Unix()}
				tc.session(s)
				r = withSession(t, st, s)
			}
			if tc.store != nil {
				st = tc.store(st)
			}
			rp, _ := testParty(t, st, Config{})
			w := httptest.NewRecorder()
			d := rp.decide(w, r, tc.roles)
			if d.Outcome != tc.outcome || d.Reason != tc.reason {
				t.Fatalf("decision = %v/%q (%v), want %v/%q", d.Outcome, d.Reason, d.Err, tc.outcome, tc.reason)
			}
			if (d.Session != nil) != (tc.outcome == Allowed || tc.outcome == Forbidden) {
				t.Errorf("identity = %v for outcome %v", d.Session, d.Outcome)
			}
			cookies := w.Result().Cookies()
			ended := tc.reason == ReasonSessionExpired || tc.reason == ReasonRefreshFailed
			switch {
			case ended && (len(cookies) != 1 || cookies[0].MaxAge >= 0):
				t.Errorf("ended session: cookies %v, want it cleared", cookies)
			case tc.newValue && (len(cookies) != 1 || cookies[0].MaxAge <= 0):
				t.Errorf("changed session: cookies %v, want a new value", cookies)
			case !ended && !tc.newValue && len(cookies) != 0:
				t.Errorf("unchanged session: cookies %v, want none written", cookies)
			}
		})
	}
}

func TestRequire_Responds(t *testing.T) {
	t.Parallel()
	st := cookieStore(t)
	valid := &session.Session{ID: session.NewID(), Subject: "u1", CreatedAt: testNow.Unix(), LastSeen: testNow.Unix(), ExpiresAt: testNow.Add(time.Hour).Unix(), RolesAt: testNow.Unix()}
	expired := *valid
	expired.ID, expired.ExpiresAt = session.NewID(), testNow.Unix()
	for _, tc := range []struct {
		name     string
		r        *http.Request
		store    session.Store
		status   int
		location string
		page     string
	}{
		{"NoSession", httptest.NewRequest(http.MethodGet, "/admin?x=1", nil), st, http.StatusSeeOther, "/auth/signin?callbackUrl=%2Fadmin%3Fx%3D1", ""},
		{"Expired", withSession(t, st, &expired), st, http.StatusSeeOther, "/auth/signin?callbackUrl=%2Fadmin%3Fx%3D1&error=session_expired", ""},
		{"Forbidden", withSession(t, st, valid), st, http.StatusForbidden, "", ReasonForbidden},
		{"StoreDown", withSession(t, st, valid), unreachableStore{st}, http.StatusServiceUnavailable, "", ReasonSessionStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rp, p := testParty(t, tc.store, Config{})
			w := httptest.NewRecorder()
			rp.RequireRole("admin")(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("refused request reached the page") })).ServeHTTP(w, tc.r)
			if w.Code != tc.status || w.Header().Get("Location") != tc.location || p.code != tc.page {
				t.Fatalf("answer %d to %q, page %q; want %d to %q, page %q", w.Code, w.Header().Get("Location"), p.code, tc.status, tc.location, tc.page)
			}
			if tc.page == ReasonSessionStore && w.Header().Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

func TestRefreshDue(t *testing.T) {
	t.Parallel()
	rp := New(Deps{Config: Config{RefreshSkew: 30 * time.Second}})
	for _, tc := range []struct {
		name   string
		expiry int64
		due    bool
	}{
		{"UnknownExpiry", 0, false},
		{"FarAhead", testNow.Add(time.Hour).Unix(), false},
		{"JustOutsideSkew", testNow.Add(31 * time.Second).Unix(), false},
		{"AtSkew", testNow.Add(30 * time.Second).Unix(), true},
		{"Expired", testNow.Add(-time.Minute).Unix(), true},
	} {
		if got := rp.refreshDue(&session.Session{AccessExpiry: tc.expiry}, testNow); got != tc.due {
			t.Errorf("%s: refreshDue = %v, want %v", tc.name, got, tc.due)
		}
	}
}

func TestTouchDue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		idle     time.Duration
		lastSeen time.Duration // before now
		due      bool
	}{
		{"LongTimeoutWithinMinute", time.Hour, 59 * time.Second, false},
		{"LongTimeoutAfterMinute", time.Hour, time.Minute, true},
		{"ShortTimeoutTenth", 5 * time.Minute, 30 * time.Second, true},
		{"ShortTimeoutBeforeTenth", 5 * time.Minute, 29 * time.Second, false},
		{"TinyTimeoutAtLeastASecond", 2 * time.Second, 0, false},
		{"TinyTimeoutAfterASecond", 2 * time.Second, time.Second, true},
		{"NoTimeout", 0, time.Minute, true},
	} {
		rp := New(Deps{Config: Config{IdleTimeout: tc.idle}})
		if got := rp.touchDue(&session.Session{LastSeen: testNow.Add(-tc.lastSeen).Unix()}, testNow); got != tc.due {
			t.Errorf("%s: touchDue = %v, want %v", tc.name, got, tc.due)
		}
	}
}

func TestHasAnyRole(t *testing.T) {
	t.Parallel()
	p := []claims.Role{{Name: "admin"}, {Name: "viewer"}}
	for _, tc := range []struct {
		roles []string
		want  bool
	}{
		{[]string{"admin"}, true},
		{[]string{"root", "viewer"}, true},
		{[]string{"root"}, false},
		{[]string{"Admin"}, false},
		{nil, false},
	} {
		if got := hasAnyRole(p, tc.roles); got != tc.want {
			t.Errorf("hasAnyRole(%v) = %v, want %v", tc.roles, got, tc.want)
		}
	}
}

func TestUserinfoFailure_Classifies(t *testing.T) {
	t.Parallel()
	retrieve := func(status int) error {
		return &oauth2.RetrieveError{Response: &http.Response{StatusCode: status}, ErrorCode: "x"}
	}
	for _, tc := range []struct {
		name   string
		err    error
		reason string
		status int
	}{
		{"Nil", nil, "", 0},
		{"ProviderNotConnected", ErrProviderUnavailable, ReasonProviderUnavailable, http.StatusServiceUnavailable},
		{"Timeout", context.DeadlineExceeded, ReasonProviderUnavailable, http.StatusServiceUnavailable},
		{"Unreachable", &url.Error{Op: "Get", URL: "http://idp/userinfo", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, ReasonProviderUnavailable, http.StatusServiceUnavailable},
		{"Provider5xx", retrieve(502), ReasonProviderUnavailable, http.StatusServiceUnavailable},
		{"Provider4xx", retrieve(401), ReasonUserinfoFailed, http.StatusTeapot},
		{"OtherSubject", fmt.Errorf("userinfo: %w", oidcrp.ErrUserInfoSubNotMatching), ReasonUserinfoSubMismatch, http.StatusTeapot},
		{"Garbage", errors.New("invalid character"), ReasonUserinfoFailed, http.StatusTeapot},
	} {
		err := userinfoFailure(tc.err, http.StatusTeapot)
		if tc.err == nil {
			if err != nil {
				t.Errorf("%s: %v, want nil", tc.name, err)
			}
			continue
		}
		if reason, status := failureOf(err); reason != tc.reason || status != tc.status || !errors.Is(err, tc.err) {
			t.Errorf("%s: %q %d, want %q %d (cause kept)", tc.name, reason, status, tc.reason, tc.status)
		}
	}
}

func TestFailureOf_OuterStepKeepsItsReason(t *testing.T) {
	t.Parallel()
	inner := fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, ErrProviderUnavailable)
	for _, tc := range []struct {
		name   string
		err    error
		reason string
		status int
	}{
		{"Inner", inner, ReasonProviderUnavailable, http.StatusServiceUnavailable},
		{"PassedOn", fmt.Errorf("refresh: %w", inner), ReasonProviderUnavailable, http.StatusServiceUnavailable},
		{"Reclassified", fail(ReasonSessionStore, http.StatusServiceUnavailable, inner), ReasonSessionStore, http.StatusServiceUnavailable},
		{"Unclassified", errors.New("boom"), reasonInternal, http.StatusInternalServerError},
	} {
		if reason, status := failureOf(tc.err); reason != tc.reason || status != tc.status {
			t.Errorf("%s: %q %d, want %q %d", tc.name, reason, status, tc.reason, tc.status)
		}
	}
	if got := safeError(inner); got != ErrProviderUnavailable.Error() {
		t.Errorf("safeError of a failure = %q, want its cause's text", got)
	}
}

func TestRespond_RetryAfterWhereTryingAgainHelps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reason     string
		status     int
		retryAfter string
	}{
		{ReasonProviderUnavailable, http.StatusServiceUnavailable, "10"},
		{ReasonSessionStore, http.StatusServiceUnavailable, "5"},
		{ReasonStateMismatch, http.StatusBadRequest, ""},
		{ReasonSessionTooLarge, http.StatusInternalServerError, ""},
	} {
		rp := New(Deps{Pages: &pages{}, Logger: slog.New(slog.DiscardHandler)})
		w := httptest.NewRecorder()
		rp.respond(w, httptest.NewRequest(http.MethodGet, "/", nil), fail(tc.reason, tc.status, errors.New("cause")))
		if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retryAfter {
			t.Errorf("%s: %d Retry-After %q, want %d %q", tc.reason, w.Code, w.Header().Get("Retry-After"), tc.status, tc.retryAfter)
		}
	}
}

func TestAfterSignIn_ChoosesTheReturnURL(t *testing.T) {
	t.Parallel()
	rp := New(Deps{Config: Config{PostLoginURL: "/profile"}})
	for in, want := range map[string]string{
		"":                      "/profile",
		"/admin?tab=1":          "/admin?tab=1",
		"//evil.example/x":      "/profile",
		"https://evil.example/": "/profile",
		`/\evil.example`:        "/profile",
		"javascript:alert(1)":   "/profile",
		"admin":                 "/profile",
	} {
		if got := rp.afterSignIn(in); got != want {
			t.Errorf("afterSignIn(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSignInNotice(t *testing.T) {
	t.Parallel()
	for reason, want := range map[string]string{
		ReasonNoSession:           "",
		ReasonSessionExpired:      ReasonSessionExpired,
		ReasonRefreshFailed:       ReasonSessionExpired,
		ReasonProviderUnavailable: ReasonSessionExpired,
	} {
		if got := signInNotice(reason); got != want {
			t.Errorf("signInNotice(%q) = %q, want %q", reason, got, want)
		}
	}
}
