package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/forward"
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
			rules, err := forward.AnyRole(tc.roles...)
			if err != nil {
				t.Fatal(err)
			}
			d := rp.Decide(w, r, rules)
			if d.Outcome != tc.outcome || d.Reason != tc.reason {
				t.Fatalf("decision = %v/%q (%v), want %v/%q", d.Outcome, d.Reason, d.Err, tc.outcome, tc.reason)
			}
			if signedIn := tc.outcome == Allowed || tc.outcome == Forbidden; (d.Session != nil) != signedIn || (d.Identity != nil) != signedIn {
				t.Errorf("session %v, identity %v for outcome %v", d.Session, d.Identity, d.Outcome)
			}
			if d.Identity != nil && d.Identity.Subject != "u1" {
				t.Errorf("identity subject %q", d.Identity.Subject)
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

// idToken is an (already verified, then sealed) ID token carrying claims:
// only its payload is read.
func idToken(t *testing.T, claims map[string]any, sig string) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return "e30." + base64.RawURLEncoding.EncodeToString(b) + "." + sig
}

func TestDecide_RulesOnZitadelRolesAndOrganisation(t *testing.T) {
	t.Parallel()
	st := cookieStore(t)
	rp, _ := testParty(t, st, Config{})
	s := &session.Session{ID: session.NewID(), Subject: "u1", CreatedAt: testNow.Unix(), LastSeen: testNow.Unix(), ExpiresAt: testNow.Add(time.Hour).Unix(),
		RolesAt: testNow.Unix(), // read at sign-in: fresh, so the rules decide
		// Roles as read from userinfo at sign-in (claims.SessionRoles).
		IDToken: idToken(t, map[string]any{"urn:zitadel:iam:user:resourceowner:id": "o1"}, "sig-a"),
		Userinfo: []byte(`{"email":"u1@acme.example","preferred_username":"u1",` +
			`"urn:zitadel:iam:org:project:roles":{"admin":{"o1":"acme.example"},"viewer":{"o2":"other.example"}}}`)}
	for _, tc := range []struct {
		rules  string
		want   Outcome
		denial forward.Denial
	}{
		{"", Allowed, forward.NotDenied},
		{"roles=admin", Allowed, forward.NotDenied},
		{"roles=ops,viewer", Allowed, forward.NotDenied},
		{"roles=ops", Forbidden, forward.MissingRole},
		{"org=o1", Allowed, forward.NotDenied},
		{"org=o2", Forbidden, forward.WrongOrg},
		{"roles=admin&org=o1", Allowed, forward.NotDenied},
		{"roles=viewer&org=o1", Forbidden, forward.MissingRole}, // viewer is granted in o2, not o1
	} {
		rules, err := forward.ParseRules(tc.rules, '&')
		if err != nil {
			t.Fatal(err)
		}
		d := rp.Decide(httptest.NewRecorder(), withSession(t, st, s), rules)
		if d.Outcome != tc.want || d.Denial != tc.denial {
			t.Errorf("%q: %v/%v, want %v/%v", tc.rules, d.Outcome, d.Denial, tc.want, tc.denial)
		}
		if d.Identity == nil || d.Identity.Email != "u1@acme.example" || d.Identity.PreferredUsername != "u1" || d.Identity.OrgID != "o1" ||
			strings.Join(d.Identity.RoleNames, ",") != "admin,viewer" {
			t.Errorf("%q: identity %+v", tc.rules, d.Identity)
		}
	}
}

func TestIdentityCache_ReadsClaimsAgainWhenTheSessionsTokensChange(t *testing.T) {
	t.Parallel()
	c := newIdentityCache(2, "")
	roles := func(names ...string) map[string]any {
		m := map[string]any{}
		for _, n := range names {
			m[n] = map[string]any{"o1": "acme"}
		}
		return map[string]any{"urn:zitadel:iam:org:project:roles": m}
	}
	s := &session.Session{ID: "s1", Subject: "u1", IDToken: idToken(t, roles("viewer"), "first-signature-0123456789012345678901234567890123456789")}
	first := c.of(s)
	if again := c.of(s); again != first {
		t.Fatal("the same tokens read the claims again")
	}
	// A refresh brings a new ID token with another role: same session ID.
	s.IDToken = idToken(t, roles("viewer", "admin"), "second-signature-012345678901234567890123456789012345678")
	if got := c.of(s); got == first || strings.Join(got.RoleNames, ",") != "admin,viewer" {
		t.Fatalf("after a new ID token: roles %v (cached identity reused: %v)", got.RoleNames, got == first)
	}
	cur := c.of(s)
	s.Userinfo = []byte(`{"email":"new@acme"}`)
	if got := c.of(s); got == cur || got.Email != "new@acme" {
		t.Fatalf("after new userinfo: email %q", got.Email)
	}
	// Bounded: more sessions than room evict, never grow.
	for i := range 10 {
		c.of(&session.Session{ID: fmt.Sprint("other", i), IDToken: s.IDToken})
	}
	if n := len(c.m); n > 2 {
		t.Fatalf("cache holds %d entries, bound 2", n)
	}
}

func TestIdentityCache_SharesEqualRoleSets(t *testing.T) {
	t.Parallel()
	c := newIdentityCache(10, "")
	grants := func(orgs ...string) map[string]any {
		g := map[string]any{}
		for _, o := range orgs {
			g[o] = o + ".example"
		}
		return map[string]any{"urn:zitadel:iam:user:resourceowner:id": "o2",
			"urn:zitadel:iam:org:project:roles": map[string]any{"admin": g, "viewer": map[string]any{"o1": "o1.example"}}}
	}
	a := c.of(&session.Session{ID: "a", Subject: "ua", IDToken: idToken(t, grants("o1", "o2"), "sig-a")})
	b := c.of(&session.Session{ID: "b", Subject: "ub", IDToken: idToken(t, grants("o2", "o1"), "sig-b")})
	other := c.of(&session.Session{ID: "c", Subject: "uc", IDToken: idToken(t, grants("o1"), "sig-c")})
	if fmt.Sprintf("%p", a.Roles) != fmt.Sprintf("%p", b.Roles) || a.Subject != "ua" || b.Subject != "ub" {
		t.Error("equal grants are not shared, or the identities mixed up")
	}
	if fmt.Sprintf("%p", other.Roles) == fmt.Sprintf("%p", a.Roles) {
		t.Error("different grants share a role set")
	}
	// The shared set still decides right for each.
	rules, _ := forward.ParseRules("roles=admin&org=o2", '&')
	if rules.Check(b.subject()) != forward.NotDenied || rules.Check(other.subject()) != forward.MissingRole {
		t.Error("rules on shared role sets decide wrongly")
	}
}
