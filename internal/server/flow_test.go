package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

const pw = devidp.DemoPassword

// assertSignedOut checks that the browser has no usable session.
func assertSignedOut(t *testing.T, b *testenv.Browser, app *testenv.App) {
	t.Helper()
	r := b.Get(app.URL + "/profile")
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/auth/signin") {
		t.Fatalf("GET /profile = %s, want 303 to /auth/signin (no session)", r)
	}
}

func TestLogin_FullFlowWithRefreshAndLogout(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{TokenTTL: 2 * time.Second},
		testenv.AppOptions{Options: server.Options{RefreshSkew: time.Nanosecond}})
	b := testenv.NewBrowser(t)

	landing := b.Get(app.URL + "/")
	if landing.StatusCode != http.StatusOK || !strings.Contains(landing.Body, "You are not signed in") {
		t.Fatalf("landing = %d, want the signed-out landing page", landing.StatusCode)
	}
	signin := b.Get(app.URL + "/auth/signin")
	if !strings.Contains(signin.Body, "Sign in with ZITADEL") {
		t.Fatal("sign-in page lacks the sign-in button")
	}

	toIdP := b.StartSignIn(app, "")
	loc, _ := toIdP.Location()
	q := loc.Query()
	for _, k := range []string{"state", "nonce", "code_challenge", "client_id", "redirect_uri", "scope"} {
		if q.Get(k) == "" {
			t.Errorf("authorization request lacks %s: %s", k, loc.Redacted())
		}
	}
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" {
		t.Errorf("authorization request response_type=%q code_challenge_method=%q", q.Get("response_type"), q.Get("code_challenge_method"))
	}
	if !strings.Contains(q.Get("scope"), "urn:zitadel:iam:org:projects:roles") {
		t.Errorf("scope %q lacks the ZITADEL roles scope", q.Get("scope"))
	}
	back := b.LoginAtProvider(toIdP, "alice", pw)
	cb, _ := back.Location()
	if cb.Path != "/auth/callback" {
		t.Fatalf("provider sent the browser to %s", cb.Path)
	}
	profile := b.Follow(b.Get(cb.String()))
	if !strings.HasSuffix(profile.URL, "/profile") || profile.StatusCode != http.StatusOK {
		t.Fatalf("after login landed on %s", profile)
	}
	for _, want := range []string{"Alice Admin", "alice@" + devidp.DemoOrgDomain, "300000000000000001", devidp.DemoOrgName, "admin", "viewer", "platform"} {
		if !strings.Contains(profile.Body, want) {
			t.Errorf("profile page lacks %q", want)
		}
	}

	ui := b.Get(app.URL + "/auth/userinfo")
	var info map[string]any
	if ui.StatusCode != http.StatusOK || json.Unmarshal([]byte(ui.Body), &info) != nil || info["sub"] != "300000000000000001" {
		t.Fatalf("userinfo = %d %s", ui.StatusCode, ui.Body)
	}

	// Let the access token expire for real; the next request refreshes.
	before := idp.Refreshes()
	time.Sleep(2100 * time.Millisecond)
	if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
		t.Fatalf("profile after expiry = %s, want 200 after a transparent refresh", r)
	}
	if got := idp.Refreshes() - before; got != 1 {
		t.Fatalf("refreshes after expiry = %d, want 1", got)
	}
	if ui := b.Get(app.URL + "/auth/userinfo"); ui.StatusCode != http.StatusOK {
		t.Fatalf("userinfo with the refreshed token = %d %s", ui.StatusCode, ui.Body)
	}

	// Logout: local session ends at once, then the provider's end_session.
	page := b.PostForm(app.URL+"/auth/logout", nil)
	if page.StatusCode != http.StatusOK {
		t.Fatalf("logout = %s", page)
	}
	assertSignedOut(t, b, app)
	action, fields := testenv.Form(t, page.Body)
	if !strings.HasPrefix(action, idp.URL) || fields.Get("id_token_hint") == "" || fields.Get("client_id") != testenv.ClientID ||
		fields.Get("post_logout_redirect_uri") != app.URL+"/auth/logout/callback" || fields.Get("state") == "" {
		t.Fatalf("end-session form action=%s fields=%v", action, keys(fields))
	}
	done := b.Follow(b.PostForm(action, fields))
	if !strings.HasSuffix(done.URL, "/auth/logout/success") || !strings.Contains(done.Body, "You are signed out") {
		t.Fatalf("logout ended at %s:\n%s", done, done.Body)
	}
	assertSignedOut(t, b, app)
}

func keys(v url.Values) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	return out
}

func TestRefresh_IsSingleFlightPerSession(t *testing.T) {
	t.Parallel()
	// The app's clock, moved forward, makes the access token due without
	// waiting for it. The provider keeps real time, so every token it
	// issues looks as much older to the app as the clock was moved: the
	// refreshed token is due as soon as the old one. So every request of
	// the burst carries the cookie the browser had when it began (as a
	// page's concurrent requests do), never the refreshed one.
	//
	// Margins: access tokens of 5 min (the provider's default) reach the
	// app as expiring in whole seconds, 297 to 299 s after they were
	// issued. 3 min ahead with a refresh skew of 2 min, the old token is
	// due (180 + 120 >= 299) and the refreshed one stays unexpired for
	// over 115 s, so the refresh's remembered answer (kept at most until
	// that expiry) serves the burst's later requests.
	clock := &testenv.Clock{}
	idp, app := testenv.Setup(t, testenv.IdPOptions{},
		testenv.AppOptions{Options: server.Options{Now: clock.Now, RefreshSkew: 2 * time.Minute}})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)
	c := b.Cookie(app.URL, "gatehouse")
	if c == nil {
		t.Fatal("no session cookie after sign-in")
	}
	clock.Advance(3 * time.Minute)

	before := idp.Refreshes()
	const n = 12
	client := noRedirects()
	codes := burst(t, n, func(int) (*http.Client, *http.Request) {
		req, _ := http.NewRequest(http.MethodGet, app.URL+"/auth/userinfo", nil)
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		return client, req
	})
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d = %d, want 200 (all continue with the one refresh's tokens)", i, c)
		}
	}
	if got := idp.Refreshes() - before; got != 1 {
		t.Fatalf("%d parallel requests caused %d refreshes, want exactly 1", n, got)
	}
}

// noRedirects is a client without a cookie jar that does not follow
// redirects: a request sent to sign in shows as the 303 it is, not as the
// sign-in page's 200.
func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestDeepLink_ReturnsToRequestedURL(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	r := b.Get(app.URL + "/profile?tab=claims")
	loc, _ := r.Location()
	if loc.Path != "/auth/signin" || loc.Query().Get("callbackUrl") != "/profile?tab=claims" {
		t.Fatalf("protected route redirect = %s", r)
	}
	page := b.Get(loc.String())
	_, fields := testenv.Form(t, page.Body)
	if fields.Get("callbackUrl") != "/profile?tab=claims" {
		t.Fatalf("sign-in form keeps callbackUrl %q", fields.Get("callbackUrl"))
	}
	landed := b.Follow(b.LoginAtProvider(b.StartSignIn(app, fields.Get("callbackUrl")), "bob", pw))
	if !strings.HasSuffix(landed.URL, "/profile?tab=claims") || landed.StatusCode != http.StatusOK {
		t.Fatalf("after login landed on %s, want /profile?tab=claims", landed)
	}
}

func TestCallbackURL_OffSiteTargetsFallBack(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	for _, target := range []string{
		"//evil.example/x", "/\\evil.example", "https://evil.example/", "http://evil.example",
		"javascript:alert(1)", "evil.example", "/\t/evil.example", "///evil.example", "\\\\evil.example",
	} {
		b := testenv.NewBrowser(t)
		landed := b.Follow(b.LoginAtProvider(b.StartSignIn(app, target), "bob", pw))
		u, _ := url.Parse(landed.URL)
		if u.Host != strings.TrimPrefix(app.URL, "http://") || u.Path != "/profile" {
			t.Errorf("callbackUrl %q: landed on %s, want %s/profile", target, landed.URL, app.URL)
		}
	}
}

func TestCallback_RejectsBadInput(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})

	// callback returns a browser that has started a sign-in, and the URL
	// the provider sent it back to (not yet visited).
	callback := func(t *testing.T) (*testenv.Browser, *url.URL) {
		b := testenv.NewBrowser(t)
		back := b.LoginAtProvider(b.StartSignIn(app, ""), "alice", pw)
		u, _ := back.Location()
		return b, u
	}
	cases := []struct {
		name string
		url  func(*url.URL) string
		want int
	}{
		{"WrongState", func(u *url.URL) string { return withQuery(u, map[string]string{"state": "forged-state"}) }, http.StatusBadRequest},
		{"MissingState", func(u *url.URL) string { return withQuery(u, map[string]string{"state": ""}) }, http.StatusBadRequest},
		{"MissingCode", func(u *url.URL) string { return withQuery(u, map[string]string{"code": ""}) }, http.StatusBadRequest},
		{"WrongCode", func(u *url.URL) string { return withQuery(u, map[string]string{"code": "not-a-code"}) }, http.StatusBadRequest},
		{"WrongIssParameter", func(u *url.URL) string { return withQuery(u, map[string]string{"iss": "http://evil.example"}) }, http.StatusBadRequest},
		{"ProviderError", func(u *url.URL) string { return withQuery(u, map[string]string{"code": "", "error": "server_error"}) }, http.StatusBadRequest},
		{"HugeState", func(u *url.URL) string { return withQuery(u, map[string]string{"state": strings.Repeat("s", 4000)}) }, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, u := callback(t)
			r := b.Get(tc.url(u))
			if r.StatusCode != tc.want {
				t.Fatalf("callback = %s, want %d", r, tc.want)
			}
			if !strings.Contains(r.Body, "<h1>") || strings.Contains(r.Body, u.Query().Get("code")) {
				t.Errorf("want a friendly page that does not echo the code:\n%s", r.Body)
			}
			assertSignedOut(t, b, app)
		})
	}

	t.Run("AccessDeniedGoesToSignInWithMessage", func(t *testing.T) {
		t.Parallel()
		b := testenv.NewBrowser(t)
		toIdP := b.StartSignIn(app, "")
		loc, _ := toIdP.Location()
		r := b.Get(app.URL + "/auth/callback?error=access_denied&state=" + url.QueryEscape(loc.Query().Get("state")))
		target, _ := r.Location()
		if r.StatusCode != http.StatusSeeOther || target.Path != "/auth/signin" || target.Query().Get("error") != "access_denied" {
			t.Fatalf("access_denied = %s", r)
		}
		if page := b.Get(target.String()); !strings.Contains(page.Body, "Sign-in cancelled") {
			t.Errorf("sign-in page does not explain access_denied")
		}
		assertSignedOut(t, b, app)
	})

	t.Run("ReplayedCode", func(t *testing.T) {
		t.Parallel()
		b, u := callback(t)
		if r := b.Follow(b.Get(u.String())); r.StatusCode != http.StatusOK {
			t.Fatalf("first use = %s", r)
		}
		// A second browser replays the same callback URL: no flow cookie.
		attacker := testenv.NewBrowser(t)
		if r := attacker.Get(u.String()); r.StatusCode != http.StatusBadRequest {
			t.Fatalf("replay from another browser = %s, want 400", r)
		}
		assertSignedOut(t, attacker, app)
		// The same browser replays it with a fresh flow for the same state:
		// the code was spent at the provider.
		b2 := testenv.NewBrowser(t)
		toIdP := b2.StartSignIn(app, "")
		loc, _ := toIdP.Location()
		replay := withQuery(u, map[string]string{"state": loc.Query().Get("state")})
		before := idp.CodeExchanges()
		if r := b2.Get(replay); r.StatusCode != http.StatusBadRequest {
			t.Fatalf("replayed code = %s, want 400", r)
		}
		if idp.CodeExchanges() == before {
			t.Fatal("replayed code never reached the provider: the test did not test replay")
		}
		assertSignedOut(t, b2, app)
	})

	t.Run("StateIsSingleUse", func(t *testing.T) {
		t.Parallel()
		b, u := callback(t)
		b.Follow(b.Get(u.String()))
		b.PostForm(app.URL+"/auth/logout", nil)
		if r := b.Get(u.String()); r.StatusCode != http.StatusBadRequest {
			t.Fatalf("second use of the callback = %s, want 400", r)
		}
		assertSignedOut(t, b, app)
	})
}

func TestCrossOriginPosts_AreRefused(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)
	for _, path := range []string{"/auth/logout", "/auth/signin/zitadel"} {
		for name, hdr := range map[string][2]string{
			"SecFetchSite": {"Sec-Fetch-Site", "cross-site"},
			"Origin":       {"Origin", "http://evil.example"},
		} {
			req, _ := http.NewRequest(http.MethodPost, app.URL+path, strings.NewReader(""))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(hdr[0], hdr[1])
			r := b.Do(req)
			if r.StatusCode != http.StatusForbidden {
				t.Errorf("%s with %s = %d, want 403", path, name, r.StatusCode)
			}
		}
	}
	if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
		t.Fatalf("after refused cross-site logout, profile = %s; the session must survive", r)
	}
}

func TestSession_ExpiresServerSide(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Modify: func(c *config.Config) {
			c.SessionDuration = 10 * time.Minute
			c.SessionIdleTimeout = 5 * time.Minute
		},
		Options: server.Options{Now: clock, RefreshSkew: -time.Hour}, // no refresh in this test
	})

	t.Run("Absolute", func(t *testing.T) {
		b := testenv.NewBrowser(t)
		b.Login(app, "alice", pw)
		for range 3 { // stay active: only the absolute limit can end it
			advance(3 * time.Minute)
			if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
				t.Fatalf("active session ended early: %s", r)
			}
		}
		advance(2 * time.Minute)
		r := b.Get(app.URL + "/profile")
		loc, _ := r.Location()
		if r.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "session_expired" {
			t.Fatalf("past SESSION_DURATION: %s, want sign-in with session_expired", r)
		}
	})
	t.Run("Idle", func(t *testing.T) {
		b := testenv.NewBrowser(t)
		b.Login(app, "alice", pw)
		captured := b.Cookie(app.URL, "gatehouse")
		advance(6 * time.Minute)
		assertSignedOut(t, b, app)
		// The captured cookie is just as dead, whatever its Max-Age says.
		thief := testenv.NewBrowser(t)
		thief.SetCookie(app.URL, captured)
		assertSignedOut(t, thief, app)
	})
}

func TestTamperedCookie_IsNoSession(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)
	c := b.Cookie(app.URL, "gatehouse")
	v := []byte(c.Value)
	v[len(v)/2] ^= 1
	forged := testenv.NewBrowser(t)
	forged.SetCookie(app.URL, &http.Cookie{Name: "gatehouse", Value: string(v)})
	if r := forged.Get(app.URL + "/profile"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("tampered cookie = %s, want redirect to sign-in", r)
	}
	if r := forged.Get(app.URL + "/"); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "not signed in") {
		t.Fatalf("landing with tampered cookie = %d", r.StatusCode)
	}
}

func TestAdmin_RequiresRole(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	alice, bob := testenv.NewBrowser(t), testenv.NewBrowser(t)
	alice.Login(app, "alice", pw)
	bob.Login(app, "bob", pw)
	if r := alice.Get(app.URL + "/admin"); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "Admin area") {
		t.Fatalf("alice /admin = %s", r)
	}
	if r := bob.Get(app.URL + "/admin"); r.StatusCode != http.StatusForbidden || !strings.Contains(r.Body, "do not have access") {
		t.Fatalf("bob /admin = %s, want friendly 403", r)
	}
}

func TestMemoryStore_LoginReplacesOldSessionAndLogoutKillsCopies(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Modify: func(c *config.Config) { c.SessionStore = "memory" },
	})
	b := testenv.NewBrowser(t)
	b.Login(app, "bob", pw)
	bobCookie := b.Cookie(app.URL, "gatehouse")
	b.Login(app, "alice", pw) // same browser: bob's session must not survive
	old := testenv.NewBrowser(t)
	old.SetCookie(app.URL, bobCookie)
	assertSignedOut(t, old, app)

	aliceCookie := b.Cookie(app.URL, "gatehouse")
	b.PostForm(app.URL+"/auth/logout", nil)
	copyOf := testenv.NewBrowser(t)
	copyOf.SetCookie(app.URL, aliceCookie)
	assertSignedOut(t, copyOf, app)
}

func TestNotFound_IsFriendly(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	r := testenv.NewBrowser(t).Get(app.URL + "/no/such/page")
	if r.StatusCode != http.StatusNotFound || !strings.Contains(r.Body, "Page not found") {
		t.Fatalf("unknown path = %d", r.StatusCode)
	}
}

func TestPages_NeverEchoRequestText(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	evil := `<script>alert(1)</script>`
	for _, u := range []string{
		"/auth/signin?error=" + url.QueryEscape(evil),
		"/auth/error?error=" + url.QueryEscape(evil),
		"/auth/signin?callbackUrl=" + url.QueryEscape("//evil.example/"+evil),
	} {
		r := b.Get(app.URL + u)
		if r.StatusCode != http.StatusOK || strings.Contains(r.Body, "alert(1)") || strings.Contains(r.Body, "evil.example") {
			t.Errorf("%s = %d; the page must not echo the request's text", u, r.StatusCode)
		}
	}
	if r := b.Get(app.URL + "/auth/signin?error=access_denied"); !strings.Contains(r.Body, "Sign-in cancelled") {
		t.Error("a known error code gets no explanation on the sign-in page")
	}
}

func TestLogoutCallback_ChecksState(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)
	page := b.PostForm(app.URL+"/auth/logout", nil)
	_, fields := testenv.Form(t, page.Body)

	forged := b.Get(app.URL + "/auth/logout/callback?state=forged")
	if loc := forged.Header.Get("Location"); loc != "/auth/logout/error" {
		t.Fatalf("forged logout state went to %q, want /auth/logout/error", loc)
	}
	// The state cookie is single-use: even the right state fails now.
	if loc := b.Get(app.URL + "/auth/logout/callback?state=" + url.QueryEscape(fields.Get("state"))).Header.Get("Location"); loc != "/auth/logout/error" {
		t.Fatalf("reused logout state went to %q", loc)
	}
	if r := b.Get(app.URL + "/auth/logout/error"); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, "could not be confirmed") {
		t.Fatalf("logout error page = %d", r.StatusCode)
	}
	assertSignedOut(t, b, app)
}

func TestParallelSignIns_InTwoTabsBothComplete(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	tab1 := b.StartSignIn(app, "/profile?tab=1")
	tab2 := b.StartSignIn(app, "/profile?tab=2")
	back2 := b.LoginAtProvider(tab2, "alice", pw)
	back1 := b.LoginAtProvider(tab1, "alice", pw)
	for want, back := range map[string]*testenv.Response{"/profile?tab=1": back1, "/profile?tab=2": back2} {
		loc, _ := back.Location()
		r := b.Get(loc.String())
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != want {
			t.Errorf("callback = %s, want a completed sign-in landing on %s", r, want)
		}
	}
}

func TestSession_ShortIdleTimeoutDoesNotEndActiveUsers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Modify:  func(c *config.Config) { c.SessionIdleTimeout = 30 * time.Second },
		Options: server.Options{Now: clock, RefreshSkew: -time.Hour},
	})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)
	for i := range 6 { // a request every 20 s for two minutes
		mu.Lock()
		now = now.Add(20 * time.Second)
		mu.Unlock()
		if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
			t.Fatalf("request %d of an active user = %s; the idle clock must be renewed", i, r)
		}
	}
}

// burst sends n requests at the same instant (client and request from mk)
// and returns their status codes, 0 where the request failed.
func burst(t *testing.T, n int, mk func(i int) (*http.Client, *http.Request)) []int {
	t.Helper()
	var wg sync.WaitGroup
	codes := make([]int, n)
	start := make(chan struct{})
	for i := range n {
		client, req := mk(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	return codes
}
