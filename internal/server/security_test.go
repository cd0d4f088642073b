package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// csp parses a Content-Security-Policy into directive → sources.
func csp(h string) map[string][]string {
	out := map[string][]string{}
	for _, d := range strings.Split(h, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			out[f[0]] = f[1:]
		}
	}
	return out
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// checkHeaders asserts the strict headers every response must carry.
func checkHeaders(t *testing.T, r *testenv.Response, idpOrigin string, https bool) {
	t.Helper()
	h := r.Header
	policy := h.Get("Content-Security-Policy")
	d := csp(policy)
	if len(d["default-src"]) != 1 || d["default-src"][0] != "'self'" {
		t.Errorf("%s: CSP default-src = %v, want 'self' only (CSP %q)", r.URL, d["default-src"], policy)
	}
	for _, want := range []string{"frame-ancestors", "base-uri", "object-src"} {
		if len(d[want]) != 1 || d[want][0] != "'none'" {
			t.Errorf("%s: CSP %s = %v, want 'none'", r.URL, want, d[want])
		}
	}
	if fa := d["form-action"]; !has(fa, "'self'") || !has(fa, idpOrigin) || len(fa) != 2 {
		t.Errorf("%s: CSP form-action = %v, want 'self' and the provider origin %s (and nothing else)", r.URL, fa, idpOrigin)
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:"} {
		for name, srcs := range d {
			if has(srcs, bad) && !(bad == "data:" && name == "img-src") {
				t.Errorf("%s: CSP %s allows %s", r.URL, name, bad)
			}
		}
	}
	for name, want := range map[string]string{
		"X-Frame-Options":            "DENY",
		"X-Content-Type-Options":     "nosniff",
		"Cross-Origin-Opener-Policy": "same-origin",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %s = %q, want %q", r.URL, name, got, want)
		}
	}
	switch rp := h.Get("Referrer-Policy"); rp {
	case "no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin":
	default:
		t.Errorf("%s: Referrer-Policy = %q, want strict-origin-when-cross-origin or stricter", r.URL, rp)
	}
	if pp := h.Get("Permissions-Policy"); !strings.Contains(pp, "camera=()") || !strings.Contains(pp, "geolocation=()") {
		t.Errorf("%s: Permissions-Policy = %q, want camera and geolocation off at least", r.URL, pp)
	}
	hsts := h.Get("Strict-Transport-Security")
	if https && !strings.HasPrefix(hsts, "max-age=") {
		t.Errorf("%s: over https, HSTS = %q", r.URL, hsts)
	}
	if !https && hsts != "" {
		t.Errorf("%s: HSTS %q over plain http", r.URL, hsts)
	}
	isStatic := strings.Contains(r.URL, "/static/")
	if cc := h.Get("Cache-Control"); !isStatic && cc != "no-store" {
		t.Errorf("%s: Cache-Control = %q, want no-store", r.URL, cc)
	}
}

var inlineCode = regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)

// TestSecurityHeaders_OnEveryRouteOfARealFlow complements
// TestSecurityHeaders_OnEveryResponse (exact values, in-process): every
// route and status of a real sign-in, refusal and logout carries the
// strict headers, and no page has inline code the CSP would block. (The
// probes carry their own, smaller set: TestProbes_AnswerInFrontOfTheChain.)
func TestSecurityHeaders_OnEveryRouteOfARealFlow(t *testing.T) {
	t.Parallel()
	idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		// One token a minute, two at once: bob's sign-in gives its tokens back when it
		// completes, anon's first two (never finished) keep theirs, the third is refused.
		Modify: func(c *config.Config) { c.RateLimit, c.RateLimitBurst = 1, 2 },
	})
	idpOrigin := strings.TrimSuffix(idp.URL, "/")
	bob := testenv.NewBrowser(t)
	bob.Login(app, "bob", pw)
	anon := testenv.NewBrowser(t)

	var responses []*testenv.Response
	get := func(b *testenv.Browser, path string) { responses = append(responses, b.Get(app.URL+path)) }
	for _, p := range []string{"/", "/auth/signin", "/auth/signin?error=access_denied", "/profile", "/admin", "/no/such/page",
		"/auth/callback?state=forged&code=x", "/auth/error?error=state_mismatch", "/auth/logout/success",
		"/static/app.css", "/auth/userinfo"} {
		get(anon, p)
	}
	for _, p := range []string{"/", "/profile", "/admin", "/auth/userinfo"} {
		get(bob, p)
	}
	responses = append(responses,
		anon.StartSignIn(app, "/profile"), // 303 to the provider
		anon.StartSignIn(app, "/profile"), // 303
		anon.StartSignIn(app, "/profile"), // 429
		bob.PostForm(app.URL+"/auth/logout", nil),
	)
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/logout", strings.NewReader(""))
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	responses = append(responses, anon.Do(req))

	statuses := map[int]bool{}
	for _, r := range responses {
		statuses[r.StatusCode] = true
		checkHeaders(t, r, idpOrigin, false)
		if strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			if m := inlineCode.FindString(r.Body); m != "" {
				t.Errorf("%s: page has inline code %q the CSP would block", r.URL, m)
			}
		}
	}
	for _, s := range []int{200, 303, 400, 403, 404, 429} {
		if !statuses[s] {
			t.Errorf("no response with status %d was checked; the list of requests no longer covers it", s)
		}
	}
}

// tlsListener serves TLS on loopback with a fresh certificate and
// returns a transport that trusts it.
func tlsListener(t *testing.T) (net.Listener, string, *http.Transport) {
	t.Helper()
	certs := testenv.NewTLSFiles(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return tls.NewListener(ln, certs.ServerConfig()), "https://" + ln.Addr().String(), &http.Transport{TLSClientConfig: certs.ClientConfig(false)}
}

func TestHTTPS_HostPrefixedSecureCookiesAndHSTS(t *testing.T) {
	t.Parallel()
	ln, appURL, tr := tlsListener(t)
	idp := testenv.StartIdP(t, testenv.IdPOptions{AppURLs: []string{appURL}})
	app := testenv.StartApp(t, ln, appURL, idp, testenv.AppOptions{}, true)
	b := testenv.NewBrowser(t)
	b.Client.Transport = tr

	checkCookie := func(c *http.Cookie, prefix string) {
		t.Helper()
		if !strings.HasPrefix(c.Name, prefix) || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q; want %s*, Secure, HttpOnly, Lax, Path=/, no Domain",
				c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain, prefix)
		}
	}
	toIdP := b.StartSignIn(app, "")
	checkHeaders(t, toIdP, strings.TrimSuffix(idp.URL, "/"), true)
	flows := toIdP.Cookies()
	if len(flows) != 1 {
		t.Fatalf("sign-in set %d cookies, want one flow cookie", len(flows))
	}
	checkCookie(flows[0], "__Host-gatehouse-flow-")
	if flows[0].MaxAge != 600 {
		t.Errorf("flow cookie Max-Age = %d, want 600 (10 minutes)", flows[0].MaxAge)
	}
	back := b.LoginAtProvider(toIdP, "alice", pw)
	cb := b.Get(back.Header.Get("Location"))
	var session *http.Cookie
	for _, c := range cb.Cookies() {
		if c.MaxAge > 0 {
			session = c
		} else {
			checkCookie(c, "__Host-gatehouse-flow-") // the spent flow cookie is deleted
		}
	}
	if session == nil {
		t.Fatalf("callback %s set no session cookie", cb)
	}
	checkCookie(session, "__Host-gatehouse")
	if session.Name != "__Host-gatehouse" {
		t.Errorf("session cookie name = %q, want __Host-gatehouse", session.Name)
	}
	profile := b.Follow(cb)
	if profile.StatusCode != http.StatusOK {
		t.Fatalf("profile over https = %s", profile)
	}
	checkHeaders(t, profile, strings.TrimSuffix(idp.URL, "/"), true)
}

// TestHTTPS_CookieDomainSharesASecurePrefixedSessionCookie is COOKIE_DOMAIN
// over https, as forward-auth for several apps deploys it: the session
// cookie is __Secure- (a __Host- cookie may not carry a Domain), carries
// the Domain so every app's host sends it, and sign-out deletes it with
// that same Domain (a deletion without it would leave the shared cookie in
// the browser).
func TestHTTPS_CookieDomainSharesASecurePrefixedSessionCookie(t *testing.T) {
	t.Parallel()
	const domain = "gatehouse.test"
	certs := testenv.NewTLSFiles(t, "login."+domain)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(raw.Addr().String())
	appURL := "https://login." + domain + ":" + port
	idp := testenv.StartIdP(t, testenv.IdPOptions{AppURLs: []string{appURL}})
	app := testenv.StartApp(t, tls.NewListener(raw, certs.ServerConfig()), appURL, idp,
		testenv.AppOptions{Env: config.Overrides{"COOKIE_DOMAIN": "." + domain}}, true)
	b := testenv.NewBrowser(t)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	b.Transport = &http.Transport{TLSClientConfig: certs.ClientConfig(false),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, p, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, "."+domain) {
				addr = net.JoinHostPort("127.0.0.1", p)
			}
			return dialer.DialContext(ctx, network, addr)
		}}

	cb := b.Get(b.LoginAtProvider(b.StartSignIn(app, ""), "alice", pw).Header.Get("Location"))
	var session *http.Cookie
	for _, c := range cb.Cookies() {
		if c.MaxAge > 0 {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("callback %s set no session cookie", cb)
	}
	if session.Name != "__Secure-gatehouse" || session.Domain != domain || !session.Secure || !session.HttpOnly ||
		session.SameSite != http.SameSiteLaxMode || session.Path != "/" {
		t.Fatalf("session cookie %s: Domain=%q Secure=%v HttpOnly=%v SameSite=%v Path=%q; want __Secure-gatehouse, Domain=%s, Secure, HttpOnly, Lax, Path=/",
			session.Name, session.Domain, session.Secure, session.HttpOnly, session.SameSite, session.Path, domain)
	}
	if c := b.Cookie("https://grafana."+domain+"/", "__Secure-gatehouse"); c == nil {
		t.Fatal("the browser does not send the session cookie to another app under COOKIE_DOMAIN")
	}
	if r := b.Follow(cb); r.StatusCode != http.StatusOK || !strings.HasSuffix(r.URL, "/profile") {
		t.Fatalf("profile with the domain cookie = %s", r)
	}

	out := b.PostForm(app.URL+"/auth/logout", nil)
	if out.StatusCode != http.StatusOK {
		t.Fatalf("logout = %s", out)
	}
	deleted := false
	for _, c := range out.Cookies() {
		if c.Name == "__Secure-gatehouse" {
			deleted = c.MaxAge < 0 && c.Domain == domain && c.Secure && c.Path == "/"
			if !deleted {
				t.Errorf("logout's session cookie: MaxAge=%d Domain=%q Secure=%v Path=%q; want a deletion with Domain=%s", c.MaxAge, c.Domain, c.Secure, c.Path, domain)
			}
		}
	}
	if !deleted {
		t.Error("logout did not delete the session cookie")
	}
	if c := b.Cookie("https://grafana."+domain+"/", "__Secure-gatehouse"); c != nil {
		t.Error("after logout the browser still holds the shared session cookie")
	}
	if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusSeeOther && r.StatusCode != http.StatusFound {
		t.Errorf("profile after logout = %s, want a redirect to sign in", r)
	}
}

func TestSessionSecretRotation_PreviousSecretOpensAndReseals(t *testing.T) {
	t.Parallel()
	const oldSecret = "rotation-test-old-secret-0123456789abcdef"
	const newSecret = "rotation-test-new-secret-0123456789abcdef"
	lnA, urlA := testenv.Listen(t)
	idp := testenv.StartIdP(t, testenv.IdPOptions{AppURLs: []string{urlA}})
	// Three deployments of the same site, as during a rolling rotation: A
	// before, B during (new + previous), C after (previous dropped). B and C
	// use A's registered redirect URI, as replicas behind one host would.
	secrets := func(cur, prev string) testenv.AppOptions {
		return testenv.AppOptions{Modify: func(c *config.Config) {
			c.SessionSecret, c.SessionSecretPrevious = cur, prev
			c.CallbackURL = urlA + "/auth/callback"
		}}
	}
	a := testenv.StartApp(t, lnA, urlA, idp, secrets(oldSecret, ""), true)
	lnB, urlB := testenv.Listen(t)
	bApp := testenv.StartApp(t, lnB, urlB, idp, secrets(newSecret, oldSecret), true)
	lnC, urlC := testenv.Listen(t)
	cApp := testenv.StartApp(t, lnC, urlC, idp, secrets(newSecret, ""), true)

	user := testenv.NewBrowser(t)
	user.Login(a, "alice", pw)
	old := user.Cookie(a.URL, "gatehouse")

	r := user.Get(bApp.URL + "/profile")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("during rotation, a session sealed with the previous secret: %s, want 200", r)
	}
	var resealed *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "gatehouse" && c.MaxAge > 0 {
			resealed = c
		}
	}
	if resealed == nil || resealed.Value == old.Value {
		t.Fatal("the old session was not re-sealed with the new secret on its first request")
	}
	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
		want   int
	}{{"Resealed", resealed, http.StatusOK}, {"SealedWithDroppedSecret", old, http.StatusSeeOther}} {
		b := testenv.NewBrowser(t)
		b.SetCookie(cApp.URL, &http.Cookie{Name: "gatehouse", Value: tc.cookie.Value})
		if r := b.Get(cApp.URL + "/profile"); r.StatusCode != tc.want {
			t.Errorf("%s cookie after the previous secret is dropped: %s, want %d", tc.name, r, tc.want)
		}
	}

	// A sign-in started before the rotation finishes after it.
	late := testenv.NewBrowser(t)
	back := late.LoginAtProvider(late.StartSignIn(a, ""), "alice", pw)
	loc, _ := back.Location()
	loc.Host = strings.TrimPrefix(bApp.URL, "http://")
	if landed := late.Follow(late.Get(loc.String())); landed.StatusCode != http.StatusOK || !strings.HasSuffix(landed.URL, "/profile") {
		t.Fatalf("sign-in started under the old secret, finished during rotation: %s", landed)
	}
}

func TestFlowState_ExpiresAfterTenMinutes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Options: server.Options{Now: clock, RefreshSkew: -time.Hour},
	})
	for _, tc := range []struct {
		wait time.Duration
		want int
	}{{9 * time.Minute, http.StatusOK}, {11 * time.Minute, http.StatusBadRequest}} {
		b := testenv.NewBrowser(t)
		back := b.LoginAtProvider(b.StartSignIn(app, ""), "bob", pw)
		mu.Lock()
		now = now.Add(tc.wait)
		mu.Unlock()
		r := b.Follow(b.Get(back.Header.Get("Location")))
		if r.StatusCode != tc.want {
			t.Fatalf("callback %v after starting: %s, want %d", tc.wait, r, tc.want)
		}
		if tc.want != http.StatusOK {
			if !strings.Contains(r.Body, "This sign-in link has expired") {
				t.Errorf("expired flow: want the friendly state page, got:\n%s", r.Body)
			}
			assertSignedOut(t, b, app)
		}
	}
}

func TestFlowState_AtMostFivePendingOldestDropped(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	b := testenv.NewBrowser(t)
	var tabs []*testenv.Response
	for range 6 {
		tabs = append(tabs, b.StartSignIn(app, ""))
	}
	n := 0
	for _, c := range b.Jar.Cookies(mustParse(t, app.URL)) {
		if strings.HasPrefix(c.Name, "gatehouse-flow-") {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("browser holds %d flow cookies after 6 sign-ins, want 5", n)
	}
	if r := b.Get(b.LoginAtProvider(tabs[0], "bob", pw).Header.Get("Location")); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("oldest of 6 pending sign-ins: %s, want 400 (dropped)", r)
	}
	if r := b.Follow(b.Get(b.LoginAtProvider(tabs[5], "bob", pw).Header.Get("Location"))); r.StatusCode != http.StatusOK {
		t.Fatalf("newest pending sign-in: %s, want success", r)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRateLimit_SignInAndCallbackPerClientIP(t *testing.T) {
	t.Parallel()
	const burst = 3
	limited := func(trusted ...string) func(*config.Config) {
		return func(c *config.Config) {
			c.RateLimit, c.RateLimitBurst = 1, burst // one token a minute: however slow the machine, no refill mid-test
			for _, p := range trusted {
				c.TrustedProxies = append(c.TrustedProxies, netip.MustParsePrefix(p))
			}
		}
	}
	post := func(b *testenv.Browser, app *testenv.App, xff string) *testenv.Response {
		req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/signin/zitadel", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		return b.Do(req)
	}
	expect429 := func(t *testing.T, r *testenv.Response) {
		t.Helper()
		secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.StatusCode != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 60 {
			t.Fatalf("%s Retry-After %q, want 429 with Retry-After 1..60", r, r.Header.Get("Retry-After"))
		}
		if !strings.Contains(r.Body, "Too many sign-in attempts") {
			t.Errorf("429 without the friendly page:\n%s", r.Body)
		}
	}

	t.Run("SignIn", func(t *testing.T) {
		t.Parallel()
		_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Modify: limited()})
		b := testenv.NewBrowser(t)
		for i := range burst {
			if r := post(b, app, ""); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-in %d within the burst: %s", i+1, r)
			}
		}
		expect429(t, post(b, app, ""))
		// Without TRUSTED_PROXIES, an internal peer (here loopback) that sends
		// X-Forwarded-For is taken for an unlisted proxy: the address it names
		// gets a bucket of its own, under the proxy's shared ceiling
		// (internal/ratelimit: TestTake_UnlistedProxyCeilingBoundsInventedClients).
		if r := post(b, app, "198.51.100.77"); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("a client named by an unlisted internal proxy: %s, want 303", r)
		}
	})
	t.Run("CompletedSignInsGiveTheirTokensBack", func(t *testing.T) {
		t.Parallel()
		_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Modify: limited()})
		b := testenv.NewBrowser(t)
		for i := range 3 * burst { // an office behind one address, everyone signing in
			if r := b.Login(app, "alice", pw); r.StatusCode != http.StatusOK {
				t.Fatalf("sign-in %d from one address: %s, want the profile", i+1, r)
			}
		}
		// Abandoned sign-ins keep their tokens.
		for i := range burst {
			if r := post(b, app, ""); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("abandoned sign-in %d within the burst: %s", i+1, r)
			}
		}
		expect429(t, post(b, app, ""))
	})
	t.Run("Callback", func(t *testing.T) {
		t.Parallel()
		_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Modify: limited()})
		b := testenv.NewBrowser(t)
		for range burst {
			if r := b.Get(app.URL + "/auth/callback?state=x&code=y"); r.StatusCode != http.StatusBadRequest {
				t.Fatalf("callback within the burst: %s, want 400 (bad state)", r)
			}
		}
		expect429(t, b.Get(app.URL+"/auth/callback?state=x&code=y"))
		// Other routes are not limited.
		if r := b.Get(app.URL + "/auth/signin"); r.StatusCode != http.StatusOK {
			t.Fatalf("sign-in page after the callback limit: %s", r)
		}
	})
	t.Run("ForwardedForFromTrustedProxy", func(t *testing.T) {
		t.Parallel()
		_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Modify: limited("127.0.0.1/32")})
		b := testenv.NewBrowser(t)
		for range burst {
			post(b, app, "198.51.100.1")
		}
		expect429(t, post(b, app, "198.51.100.1"))
		// A spoofed left-most entry does not buy a fresh bucket ...
		expect429(t, post(b, app, "203.0.113.9, 198.51.100.1"))
		// ... but another real client behind the proxy has its own.
		if r := post(b, app, "198.51.100.2"); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("another client behind the trusted proxy: %s, want 303", r)
		}
	})
	t.Run("ZeroDisables", func(t *testing.T) {
		t.Parallel()
		_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
		b := testenv.NewBrowser(t)
		for i := range 3 * burst {
			if r := post(b, app, ""); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("RATE_LIMIT_PER_MINUTE=0: sign-in %d = %s", i+1, r)
			}
		}
	})
}

func TestAdmin_ShowsRolesAndOrganisationAndNeedsASession(t *testing.T) {
	t.Parallel()
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{})
	anon := testenv.NewBrowser(t)
	r := anon.Get(app.URL + "/admin")
	if loc, _ := r.Location(); r.StatusCode != http.StatusSeeOther || loc.Path != "/auth/signin" || loc.Query().Get("callbackUrl") != "/admin" {
		t.Fatalf("anonymous /admin = %s, want sign-in with callbackUrl=/admin", r)
	}
	alice := testenv.NewBrowser(t)
	alice.Login(app, "alice", pw)
	page := alice.Get(app.URL + "/admin")
	for _, want := range []string{"admin", "viewer", devidp.DemoOrgName, devidp.DemoOrgDomain} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("/admin for alice lacks %q", want)
		}
	}
}

func TestRateLimit_RefusalIsOnTheRequestSpan(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(telemetry.Providers{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Modify:  func(c *config.Config) { c.RateLimit, c.RateLimitBurst = 1, 1 },
		Options: server.Options{Telemetry: tel},
	})
	b := testenv.NewBrowser(t)
	b.StartSignIn(app, "")
	if r := b.StartSignIn(app, ""); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second sign-in = %s, want 429", r)
	}
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "auth.failure.reason" && a.Value.AsString() == "rate_limited" {
				return
			}
		}
	}
	t.Fatal("no span has auth.failure.reason=rate_limited")
}
