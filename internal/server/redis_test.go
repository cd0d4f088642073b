package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

const (
	aliceID = "300000000000000001"
	bobID   = "300000000000000002"
)

// replicas starts a provider and two Gatehouse instances that share one
// Redis (the same URL and key prefix), as two pods behind one Service.
// The provider's back-channel logout URI points at the first.
func replicas(t *testing.T, idpOpts testenv.IdPOptions, opts server.Options) (*testenv.IdP, *testenv.App, *testenv.App) {
	t.Helper()
	redisURL, prefix := testenv.Redis(t)
	lnA, urlA := testenv.Listen(t)
	lnB, urlB := testenv.Listen(t)
	idpOpts.AppURLs = append(idpOpts.AppURLs, urlA, urlB)
	idpOpts.Backchannel = true
	idp := testenv.StartIdP(t, idpOpts)
	appOpts := testenv.AppOptions{Modify: testenv.UseRedis(redisURL, prefix), Options: opts}
	a := testenv.StartApp(t, lnA, urlA, idp, appOpts, true)
	b := testenv.StartApp(t, lnB, urlB, idp, appOpts, true)
	return idp, a, b
}

// onlyOn returns a browser holding c, to send it to another instance (the
// cookie jar ignores ports, but the tests should not depend on that).
func onlyOn(t *testing.T, app *testenv.App, c *http.Cookie) *testenv.Browser {
	b := testenv.NewBrowser(t)
	b.SetCookie(app.URL, &http.Cookie{Name: c.Name, Value: c.Value})
	return b
}

func assertSignedIn(t *testing.T, b *testenv.Browser, app *testenv.App, who string) {
	t.Helper()
	r := b.Get(app.URL + "/profile")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Body, who) {
		t.Fatalf("GET %s/profile = %s, want %s's profile", app.URL, r, who)
	}
}

func TestRedis_TwoInstancesShareSessionsAndLogout(t *testing.T) {
	t.Parallel()
	_, a, b := replicas(t, testenv.IdPOptions{}, server.Options{})
	br := testenv.NewBrowser(t)
	br.Login(a, "alice", pw)
	c := br.Cookie(a.URL, "gatehouse")
	if c == nil || len(c.Value) >= 200 {
		t.Fatalf("session cookie = %v, want one under 200 bytes", c)
	}
	onB := onlyOn(t, b, c)
	assertSignedIn(t, onB, b, "Alice Admin")
	if r := onB.Get(b.URL + "/auth/userinfo"); r.StatusCode != http.StatusOK {
		t.Fatalf("userinfo on B = %s", r)
	}

	if r := onB.PostForm(b.URL+"/auth/logout", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("logout on B = %s", r)
	}
	assertSignedOut(t, onlyOn(t, a, c), a)
	assertSignedOut(t, onlyOn(t, b, c), b)
}

func TestRedis_LargeSessionWorksAndCookieStaysSmall(t *testing.T) {
	t.Parallel()
	// Metadata travels in the ID token and in userinfo: 3 KB of random
	// text makes the session well over 4 KB after any compression.
	blob := make([]byte, 2300)
	_, _ = rand.Read(blob)
	users := devidp.DemoUsers()
	users[0].Metadata["certificate"] = base64.StdEncoding.EncodeToString(blob)
	redisURL, prefix := testenv.Redis(t)

	_, cookieApp := testenv.Setup(t, testenv.IdPOptions{Users: users}, testenv.AppOptions{})
	tooBig := testenv.NewBrowser(t).Login(cookieApp, "alice", pw)
	if tooBig.StatusCode != http.StatusInternalServerError || !strings.Contains(tooBig.Body, "too large") {
		t.Fatalf("cookie store with a large session = %s; want the session_too_large page (else this test proves nothing)", tooBig)
	}

	_, app := testenv.Setup(t, testenv.IdPOptions{Users: users}, testenv.AppOptions{Modify: testenv.UseRedis(redisURL, prefix)})
	br := testenv.NewBrowser(t)
	landed := br.Login(app, "alice", pw)
	if landed.StatusCode != http.StatusOK || !strings.Contains(landed.Body, "Alice Admin") {
		t.Fatalf("redis store with a large session landed on %s", landed)
	}
	if c := br.Cookie(app.URL, "gatehouse"); c == nil || len(c.Value) >= 200 {
		t.Fatalf("session cookie = %v, want under 200 bytes", c)
	}
	assertSignedIn(t, br, app, "certificate")
}

func TestRefresh_IsSingleFlightAcrossReplicas(t *testing.T) {
	t.Parallel()
	// The access token expires for real (a clock moved forward would make
	// the refreshed token, which the burst's later requests load from the
	// shared record, look as old as the first: due too). The provider
	// answers expires_in = ttl-1 s (ttl-2 s if the answer took over a
	// second) and sessions keep the expiry in whole seconds, so with the
	// refresh skew of 1 ns a token of ttl falls due between ttl-3 s and
	// ttl-1 s after it reached the app: the first is due once ttl-1 s
	// have passed since the sign-in, and a request of the burst that
	// loads the record only after the refresh still finds its token
	// good for at least ttl-3 s = 7 s.
	const ttl = 10 * time.Second
	idp, a, b := replicas(t, testenv.IdPOptions{TokenTTL: ttl}, server.Options{RefreshSkew: time.Nanosecond})
	br := testenv.NewBrowser(t)
	br.Login(a, "alice", pw)
	c := br.Cookie(a.URL, "gatehouse")
	time.Sleep(ttl - time.Second + 100*time.Millisecond) // the access token expires for real

	before := idp.Refreshes()
	const n = 16
	client := noRedirects()
	codes := burst(t, n, func(i int) (*http.Client, *http.Request) {
		app := a
		if i%2 == 1 {
			app = b
		}
		req, _ := http.NewRequest(http.MethodGet, app.URL+"/auth/userinfo", nil)
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		return client, req
	})
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("request %d (instance %c) = %d, want 200: all continue with the one refresh's tokens", i, "AB"[i%2], code)
		}
	}
	if got := idp.Refreshes() - before; got != 1 {
		t.Fatalf("%d parallel requests on two instances caused %d refreshes, want exactly 1", n, got)
	}
	for _, app := range []*testenv.App{a, b} {
		if r := onlyOn(t, app, c).Get(app.URL + "/auth/userinfo"); r.StatusCode != http.StatusOK {
			t.Errorf("after the refresh, userinfo on %s = %s", app.URL, r)
		}
	}
}

func TestBackchannelLogout_EndsSessionsOnEveryInstance(t *testing.T) {
	t.Parallel()
	idp, a, b := replicas(t, testenv.IdPOptions{}, server.Options{})
	alice1, alice2, bob := testenv.NewBrowser(t), testenv.NewBrowser(t), testenv.NewBrowser(t)
	alice1.Login(a, "alice", pw)
	alice2.Login(b, "alice", pw)
	bob.Login(a, "bob", pw)
	if idp.SessionID(aliceID) == "" {
		t.Fatal("the provider has no session ID for alice: ID tokens carry no sid")
	}

	// The provider calls A (its registered URI); the sessions end on both.
	if err := idp.BackchannelLogout(t.Context(), aliceID); err != nil {
		t.Fatalf("BackchannelLogout: %v", err)
	}
	for _, app := range []*testenv.App{a, b} {
		assertSignedOut(t, alice1, app)
		assertSignedOut(t, alice2, app)
		assertSignedIn(t, bob, app, "Bob Viewer")
	}
}

func TestBackchannelLogout_RejectsBadTokensAndEndsNothing(t *testing.T) {
	t.Parallel()
	idp, a, b := replicas(t, testenv.IdPOptions{}, server.Options{})
	victim := testenv.NewBrowser(t)
	victim.Login(a, "alice", pw)
	sid := idp.SessionID(aliceID)

	// good returns a valid, signed, sub-and-sid logout token's claims.
	good := func() map[string]any {
		raw, _ := json.Marshal(idp.LogoutTokenClaims(testenv.ClientID, aliceID))
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return m
	}
	sign := func(m map[string]any) string {
		tok, err := idp.SignJWT(m, "logout+jwt")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	with := func(k string, v any) string {
		m := good()
		m[k] = v
		return sign(m)
	}
	without := func(keys ...string) string {
		m := good()
		for _, k := range keys {
			delete(m, k)
		}
		return sign(m)
	}
	unsigned := func() string {
		payload, _ := json.Marshal(good())
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." +
			base64.RawURLEncoding.EncodeToString(payload) + "."
	}
	foreign := func() string {
		other, err := devidp.New(devidp.Options{Issuer: idp.URL}) // same issuer, other keys
		if err != nil {
			t.Fatal(err)
		}
		tok, err := other.SignJWT(good(), "logout+jwt")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tamper := func() string {
		parts := strings.Split(sign(good()), ".")
		m := good()
		m["sub"] = bobID
		payload, _ := json.Marshal(m)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	}
	now := time.Now()
	cases := map[string]string{
		"unsigned (alg none)":       unsigned(),
		"signed by another key":     foreign(),
		"payload changed after sig": tamper(),
		"wrong audience":            with("aud", []string{"some-other-client"}),
		"nonce present":             with("nonce", "n-0S6_WzA2Mj"),
		"wrong issuer":              with("iss", "https://evil.example"),
		"expired":                   with("exp", now.Add(-10*time.Minute).Unix()),
		"issued in the future":      with("iat", now.Add(time.Hour).Unix()),
		"no iat":                    without("iat"),
		"no events":                 without("events"),
		"wrong event":               with("events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}),
		"event not an object":       with("events", map[string]any{"http://schemas.openid.net/event/backchannel-logout": "yes"}),
		"neither sub nor sid":       without("sub", "sid"),
		"no jti":                    without("jti"),
		"not a JWT":                 "not-a-jwt",
		"typed as an access token": func() string {
			tok, _ := idp.SignJWT(good(), "at+jwt")
			return tok
		}(),
		"missing": "",
	}
	for name, tok := range cases {
		for _, app := range []*testenv.App{a, b} {
			r := postLogoutToken(t, app, tok)
			var body map[string]string
			if r.StatusCode != http.StatusBadRequest || json.Unmarshal([]byte(r.Body), &body) != nil || body["error"] == "" {
				t.Errorf("%s: %s answered %d %q, want 400 with a JSON error", name, app.URL, r.StatusCode, r.Body)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("%s: Cache-Control = %q, want no-store", name, cc)
			}
		}
		assertSignedIn(t, victim, a, "Alice Admin")
	}

	// A good token works once: sub only, to end every session of alice.
	once := without("sid")
	if r := postLogoutToken(t, a, once); r.StatusCode != http.StatusOK {
		t.Fatalf("good logout token = %d %s", r.StatusCode, r.Body)
	}
	assertSignedOut(t, victim, a)

	// Replayed, on the other instance, after alice signed in again.
	again := testenv.NewBrowser(t)
	again.Login(b, "alice", pw)
	if r := postLogoutToken(t, b, once); r.StatusCode != http.StatusBadRequest || !strings.Contains(r.Body, "already used") {
		t.Fatalf("replayed logout token = %d %s, want 400 already used", r.StatusCode, r.Body)
	}
	assertSignedIn(t, again, a, "Alice Admin")

	// A sid-only token ends the sessions of that provider session.
	if sid == "" {
		t.Fatal("no sid")
	}
	if r := postLogoutToken(t, b, without("sub")); r.StatusCode != http.StatusOK {
		t.Fatalf("sid-only logout token = %d %s", r.StatusCode, r.Body)
	}
	assertSignedOut(t, again, a)
}

func postLogoutToken(t *testing.T, app *testenv.App, token string) *testenv.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/backchannel-logout",
		strings.NewReader("logout_token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return testenv.NewBrowser(t).Do(req) // server to server: no cookies, no Origin, no Sec-Fetch-Site
}

func TestBackchannelLogout_CookieStoreAnswers501(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{Backchannel: true}, testenv.AppOptions{})
	testenv.NewBrowser(t).Login(app, "alice", pw)
	err := idp.BackchannelLogout(t.Context(), aliceID)
	if err == nil || !strings.Contains(err.Error(), "501") || !strings.Contains(err.Error(), "SESSION_STORE=redis") {
		t.Fatalf("back-channel logout with the cookie store: %v; want 501 explaining SESSION_STORE=redis", err)
	}
}

func TestBackchannelLogout_MemoryStore(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{Backchannel: true}, testenv.AppOptions{
		Modify: func(c *config.Config) { c.SessionStore = "memory" },
	})
	alice, bob := testenv.NewBrowser(t), testenv.NewBrowser(t)
	alice.Login(app, "alice", pw)
	bob.Login(app, "bob", pw)
	tok, err := idp.SignJWT(idp.LogoutTokenClaims(testenv.ClientID, aliceID), "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	// Exempt from the cross-origin check: even with browser-style
	// cross-site headers the token is what decides.
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/backchannel-logout", strings.NewReader("logout_token="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", idp.URL)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := testenv.NewBrowser(t).Do(req); r.StatusCode != http.StatusOK {
		t.Fatalf("logout token = %d %s", r.StatusCode, r.Body)
	}
	assertSignedOut(t, alice, app)
	assertSignedIn(t, bob, app, "Bob Viewer")
	if r := postLogoutToken(t, app, tok); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed logout token = %d, want 400", r.StatusCode)
	}
}

// Readiness needs the store to have answered once: a pod whose Redis was
// never reachable (a wrong address, a missing password) gets no traffic.
func TestRedis_NotReadyUntilTheStoreHasAnswered(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Modify: testenv.UseRedis("unix://"+filepath.Join(t.TempDir(), "no-redis.sock"), "gatehouse:")})
	r := testenv.NewBrowser(t).Get(app.URL + "/readyz")
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Body, `"session_store":"unavailable"`) {
		t.Fatalf("readyz with an unreachable store = %s, want 503 naming the store", r)
	}
}

func TestRedis_OutageGivesFriendly503AndRecovers(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Modify: testenv.UseRedis(srv.URL(), "gatehouse:")})
	br := testenv.NewBrowser(t)
	br.Login(app, "alice", pw)
	assertSignedIn(t, br, app, "Alice Admin")
	if r := br.Get(app.URL + "/readyz"); r.StatusCode != http.StatusOK { // as the kubelet asks before sending traffic
		t.Fatalf("readyz before the outage = %s", r)
	}

	srv.Stop()
	for _, path := range []string{"/profile", "/auth/userinfo", "/admin"} {
		r := br.Get(app.URL + path)
		if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Errorf("GET %s during the outage = %s, want 503 with Retry-After", path, r)
		}
		if path != "/auth/userinfo" && !strings.Contains(r.Body, "Sessions are temporarily unavailable") {
			t.Errorf("GET %s during the outage is not the friendly page", path)
		}
	}
	for _, path := range []string{"/", "/auth/signin", "/healthz", "/static/app.css"} {
		if r := br.Get(app.URL + path); r.StatusCode != http.StatusOK {
			t.Errorf("public GET %s during the outage = %s, want 200", path, r)
		}
	}
	ready := br.Get(app.URL + "/readyz")
	// Ready before the outage, so it stays ready: every replica shares Redis.
	if ready.StatusCode != http.StatusOK || !strings.Contains(ready.Body, `"session_store":"unavailable"`) {
		t.Errorf("readyz during the outage = %d %s, want 200 naming the store unavailable", ready.StatusCode, ready.Body)
	}
	if r := br.PostForm(app.URL+"/auth/logout", nil); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("logout during the outage = %s, want 503 (the session could not be ended)", r)
	}
	// Signing in needs a place to keep the new session.
	other := testenv.NewBrowser(t)
	if r := other.Follow(other.LoginAtProvider(other.StartSignIn(app, ""), "bob", pw)); r.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(r.Body, "Sessions are temporarily unavailable") {
		t.Errorf("sign-in during the outage = %s, want the friendly 503", r)
	}

	srv.Start() // empty, like a restarted Redis without persistence
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(br.Get(app.URL+"/readyz").Body, `"session_store":"ok"`) {
		if time.Now().After(deadline) {
			t.Fatal("readyz did not recover after Redis returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertSignedOut(t, br, app) // its record went with Redis's memory
	fresh := testenv.NewBrowser(t)
	fresh.Login(app, "bob", pw)
	assertSignedIn(t, fresh, app, "Bob Viewer")
}

// midRefreshFault is the real Redis store with one fault injected where no
// real outage can be timed: between loading a session and taking its
// refresh lock. This is the test's only fake.
type midRefreshFault struct {
	*session.RedisStore
	fault atomic.Pointer[func(ctx context.Context) error]
}

func (m *midRefreshFault) TryLock(ctx context.Context, id string, ttl time.Duration) (func(), bool, error) {
	if f := m.fault.Load(); f != nil {
		if err := (*f)(ctx); err != nil {
			return nil, false, err
		}
	}
	return m.RedisStore.TryLock(ctx, id, ttl)
}

func TestRefresh_StoreTroubleMidRefresh(t *testing.T) {
	t.Parallel()
	redisURL, prefix := testenv.Redis(t)
	store := &midRefreshFault{RedisStore: testenv.RedisStore(t, redisURL, prefix, "mid-refresh-fault-secret-0123456789abcdef")}
	idp, app := testenv.Setup(t, testenv.IdPOptions{TokenTTL: 2 * time.Second},
		testenv.AppOptions{Options: server.Options{RefreshSkew: time.Nanosecond, Sessions: store}})
	alice, bob := testenv.NewBrowser(t), testenv.NewBrowser(t)
	alice.Login(app, "alice", pw)
	bob.Login(app, "bob", pw)
	time.Sleep(2100 * time.Millisecond) // both access tokens expire for real (expires_in counts whole seconds)

	// Redis goes away mid-refresh: a friendly 503, and the session is kept.
	down := func(context.Context) error { return fmt.Errorf("%w: injected", session.ErrUnavailable) }
	store.fault.Store(&down)
	before := idp.Refreshes()
	if r := alice.Get(app.URL + "/profile"); r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Sessions are temporarily unavailable") {
		t.Fatalf("profile with Redis failing mid-refresh = %s, want the friendly 503", r)
	}
	store.fault.Store(nil)
	assertSignedIn(t, alice, app, "Alice Admin")
	if got := idp.Refreshes() - before; got != 1 {
		t.Errorf("refreshes = %d, want 1 (none while the store failed, one after)", got)
	}

	// The session is ended elsewhere at that instant (logout on another
	// replica): sign in again, and its refresh token is never used.
	revoke := func(ctx context.Context) error {
		_, err := store.DeleteBySubject(ctx, bobID)
		return err
	}
	store.fault.Store(&revoke)
	before = idp.Refreshes()
	r := bob.Get(app.URL + "/profile")
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/auth/signin") {
		t.Fatalf("profile of a session ended mid-refresh = %s, want 303 to sign in", r)
	}
	store.fault.Store(nil)
	if got := idp.Refreshes() - before; got != 0 {
		t.Errorf("an ended session's refresh token was used %d times", got)
	}
	assertSignedOut(t, bob, app)
}

// A sign-in whose session cannot be saved must not leave the browser's
// previous user signed in: the callback clears the old cookie first.
func TestCallback_FailedSaveLeavesNobodySignedIn(t *testing.T) {
	t.Parallel()
	blob := make([]byte, 2300) // random: no compression makes alice's session fit a cookie
	_, _ = rand.Read(blob)
	users := devidp.DemoUsers()
	users[0].Metadata["certificate"] = base64.StdEncoding.EncodeToString(blob)
	_, app := testenv.Setup(t, testenv.IdPOptions{Users: users}, testenv.AppOptions{})
	br := testenv.NewBrowser(t)
	br.Login(app, "bob", pw)
	assertSignedIn(t, br, app, "Bob")
	if r := br.Login(app, "alice", pw); r.StatusCode != http.StatusInternalServerError || !strings.Contains(r.Body, "too large") {
		t.Fatalf("alice's sign-in = %s; want the session_too_large page", r)
	}
	assertSignedOut(t, br, app)
}
