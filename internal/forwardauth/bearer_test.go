package forwardauth_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// API clients calling through the proxy with Authorization: Bearer, judged
// by the real endpoints against the real provider, which issues the
// tokens (JWT and opaque, per application) and answers introspection.

const gatehouseSecret = "gatehouse-bearer-test-secret"

var (
	// apiCLI is an API client of Gatehouse's project with opaque tokens:
	// introspection says active for every application of the project.
	apiCLI = devidp.Client{ID: "api-cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	// apiJWT is one with JWT access tokens; the development provider puts
	// only its own client ID into their aud (see docs/API-CLIENTS.md).
	apiJWT = devidp.Client{ID: "api-jwt", Secret: "jwt-secret", RedirectURIs: []string{"http://127.0.0.1:1/jwt"}, JWTAccessTokens: true}
)

// bearerFixture is a provider and a Gatehouse that can introspect (it has
// a client secret) and whose own application issues JWT access tokens, as
// a single-page app sharing Gatehouse's ZITADEL application would use.
type bearerFixture struct {
	*fixture
	self devidp.Client // Gatehouse's own application, as an API client logging in by itself
}

func setupBearer(t *testing.T, modify func(*config.Config), opts server.Options) *bearerFixture {
	t.Helper()
	f := setup(t, testenv.IdPOptions{Secret: gatehouseSecret, JWTAccessTokens: true, Clients: []devidp.Client{apiCLI, apiJWT}},
		func(c *config.Config) {
			c.ClientSecret = gatehouseSecret
			if modify != nil {
				modify(c)
			}
		}, opts)
	return &bearerFixture{fixture: f,
		self: devidp.Client{ID: testenv.ClientID, Secret: gatehouseSecret, RedirectURIs: []string{f.app.URL + "/auth/callback"}}}
}

// token signs user in at the provider as application c and returns the
// access token.
func (f *bearerFixture) token(t *testing.T, c devidp.Client, user string) string {
	t.Helper()
	return f.idp.Tokens(t, c, user, pw).AccessToken
}

// call asks path about a request carrying token, as the proxy passes the
// client's headers on.
func (f *bearerFixture) call(t *testing.T, method, path, token string, headers ...string) *testenv.Response {
	t.Helper()
	return ask(t, testenv.NewBrowser(t), method, f.app.URL+path, append(headers, "Authorization", "Bearer "+token)...)
}

// wantInvalidToken: 401 with the RFC 6750 challenge and a JSON body,
// nothing that looks like a sign-in.
func wantInvalidToken(t *testing.T, r *testenv.Response) {
	t.Helper()
	wantStatus(t, r, http.StatusUnauthorized)
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if r.Header.Get("Location") != "" || r.Header.Get("Set-Cookie") != "" || strings.Contains(r.Body, "signin") ||
		r.Header.Get("Content-Type") != "application/json" || !strings.Contains(r.Body, `"error":"invalid_token"`) {
		t.Errorf("a bearer refusal that is not an API answer: %v %q", r.Header, r.Body)
	}
	if r.Header.Get(forward.HeaderUser) != "" || r.Header.Get(forward.HeaderAssertion) != "" {
		t.Errorf("identity on a 401: %v", r.Header)
	}
}

func TestBearer_JWTAndOpaqueTokensPassWithTheSameIdentityAsASession(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, func(c *config.Config) { c.ForwardAccessToken = true }, server.Options{})
	session := ask(t, f.signedIn(t, "alice"), http.MethodGet, f.app.URL+"/auth/verify?roles=admin", nginx()...)
	wantStatus(t, session, http.StatusOK)

	for _, tc := range []struct {
		name   string
		client devidp.Client
		jwt    bool
	}{
		{"JWT", f.self, true},
		{"Opaque", apiCLI, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token := f.token(t, tc.client, "alice")
			if isJWT := strings.Count(token, ".") == 2; isJWT != tc.jwt {
				t.Fatalf("the provider issued the wrong kind of token: %q", token)
			}
			for _, endpoint := range []struct {
				path    string
				headers []string
			}{
				{"/auth/verify?roles=admin", nginx(navigation...)},
				{"/auth/forward?roles=admin,viewer", traefik(http.MethodPost, script...)},
				{"/auth/forward;roles=admin/d/1?x=2", []string{"Host", appHost}}, // Envoy
			} {
				r := f.call(t, http.MethodGet, endpoint.path, token, endpoint.headers...)
				wantStatus(t, r, http.StatusOK)
				// The headers a session of the same user gets; e-mail
				// and username only where the token carries them.
				for _, h := range []string{forward.HeaderUser, forward.HeaderGroups} {
					if got, want := r.Header.Get(h), session.Header.Get(h); got != want {
						t.Errorf("%s: %s = %q, a session gets %q", endpoint.path, h, got, want)
					}
				}
				if !tc.jwt && (r.Header.Get(forward.HeaderEmail) != "alice@"+devidp.DemoOrgDomain || r.Header.Get(forward.HeaderPreferredUsername) != "alice") {
					t.Errorf("introspection's e-mail and username missing: %v", r.Header)
				}
				if got := r.Header.Get(forward.HeaderAccessToken); got != token {
					t.Errorf("FORWARD_ACCESS_TOKEN: upstream gets %q, want the caller's own token", got)
				}
				if r.Header.Get("Set-Cookie") != "" {
					t.Errorf("a bearer decision set a cookie: %v", r.Header)
				}
				c := assertionClaims(t, f.fixture, r.Header.Get(forward.HeaderAssertion))
				if c["aud"] != appHost || c["sub"] != aliceID || c["azp"] != tc.client.ID ||
					!slices.Equal(toStrings(c["roles"]), []string{"admin", "viewer"}) {
					t.Errorf("%s: assertion %v", endpoint.path, c)
				}
			}
		})
	}
}

func TestBearer_BadTokenIs401NeverARedirect_CookiesNotConsulted(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, nil, server.Options{})
	alice := f.signedIn(t, "alice") // a valid session cookie rides along
	for _, tc := range []struct{ name, header string }{
		{"Garbage", "Bearer not-a-token-anyone-issued"},
		{"Forged JWT", "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIzMDAwMDAwMDAwMDAwMDAwMDEifQ.c2ln"},
		{"Empty", "Bearer "},
		{"Not a token68", "Bearer a b"},
	} {
		for _, path := range []string{"/auth/verify", "/auth/forward"} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				r := ask(t, alice, method, f.app.URL+path, traefik(method, slices.Concat(navigation, []string{"Authorization", tc.header})...)...)
				if method == http.MethodHead {
					wantStatus(t, r, http.StatusUnauthorized)
					continue
				}
				t.Run(tc.name+path, func(t *testing.T) { wantInvalidToken(t, r) })
			}
		}
	}
	// The same browser without the header: its session decides.
	wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...), http.StatusOK)
	// Other schemes are not bearer tokens: the cookie decides.
	wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx("Authorization", "Basic dXNlcjpwdw==")...), http.StatusOK)
}

func TestBearer_MissingRoleIs403InsufficientScope(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, nil, server.Options{})
	for _, c := range []devidp.Client{f.self, apiCLI} {
		bob := f.token(t, c, "bob") // viewer only
		for _, path := range []string{"/auth/verify?roles=admin", "/auth/forward?roles=admin"} {
			r := f.call(t, http.MethodGet, path, bob, traefik(http.MethodGet, navigation...)...)
			wantStatus(t, r, http.StatusForbidden)
			if r.Header.Get("WWW-Authenticate") != `Bearer error="insufficient_scope"` || r.Header.Get("Content-Type") != "application/json" ||
				!strings.Contains(r.Body, `"error":"forbidden"`) || r.Header.Get(forward.HeaderUser) != "" {
				t.Errorf("%s %s: %v %q", c.ID, path, r.Header, r.Body)
			}
		}
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify?roles=admin,viewer", bob, nginx()...), http.StatusOK)
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify?org=999", bob, nginx()...), http.StatusForbidden)
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify?roles=viewer&org="+devidp.DemoOrgID, bob, nginx()...), http.StatusOK)
	}
}

func TestBearer_ProviderDownAndNothingCachedIs503(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, nil, server.Options{})
	cachedOpaque, coldOpaque := f.token(t, apiCLI, "alice"), f.token(t, apiCLI, "bob")
	jwt := f.token(t, f.self, "alice")
	for _, tok := range []string{cachedOpaque, jwt} {
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", tok, nginx()...), http.StatusOK)
	}
	forged := signedBy(t, f, map[string]any{"kid": "rotated-away"})
	f.idp.Stop()

	for _, path := range []string{"/auth/verify", "/auth/forward"} {
		r := f.call(t, http.MethodGet, path, coldOpaque, traefik(http.MethodGet, navigation...)...)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, `"error":"provider_unavailable"`) ||
			r.Header.Get("WWW-Authenticate") != "" || r.Header.Get(forward.HeaderUser) != "" {
			t.Errorf("%s: 503 %v %q", path, r.Header, r.Body)
		}
	}
	// A token whose key is not in the cached key set cannot be checked
	// either: 503, not 401.
	wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", forged, nginx()...), http.StatusServiceUnavailable)
	// What is cached still answers: the introspection answer, and a JWT
	// (verified locally against the cached key set). Role rules too: a
	// token's roles are as fresh as its verdict, not subject to
	// ROLES_MAX_AGE's re-read at the provider as a session's are.
	for _, tok := range []string{cachedOpaque, jwt} {
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", tok, nginx()...), http.StatusOK)
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify?roles=admin", tok, nginx()...), http.StatusOK)
	}
	if !strings.Contains(f.logs.String(), "the identity provider cannot be asked") || strings.Contains(f.logs.String(), coldOpaque) {
		t.Errorf("the outage is not logged as such, or the token is:\n%s", f.logs.String())
	}

	f.idp.Start(t)
	deadline := time.Now().Add(5 * time.Second)
	for r := f.call(t, http.MethodGet, "/auth/verify", coldOpaque, nginx()...); r.StatusCode != http.StatusOK; r = f.call(t, http.MethodGet, "/auth/verify", coldOpaque, nginx()...) {
		if time.Now().After(deadline) {
			t.Fatalf("after the provider returned: %d, want 200 (a failed call is not cached)", r.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signedBy is a JWT access token for Gatehouse signed with the provider's
// key, with header fields overridden (kid).
func signedBy(t *testing.T, f *bearerFixture, header map[string]any, claims ...map[string]any) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{"iss": f.idp.URL, "sub": aliceID, "aud": []string{testenv.ClientID}, "client_id": testenv.ClientID,
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprint(now.UnixNano())}
	for _, more := range claims {
		for k, v := range more {
			c[k] = v
		}
	}
	tok, err := f.idp.SignJWT(c, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(header) == 0 {
		return tok
	}
	parts := strings.Split(tok, ".")
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var hm map[string]any
	_ = json.Unmarshal(h, &hm)
	for k, v := range header {
		hm[k] = v
	}
	h, _ = json.Marshal(hm)
	return base64.RawURLEncoding.EncodeToString(h) + "." + parts[1] + "." + parts[2]
}

func TestBearer_ColdOpaqueTokenCostsOneIntrospectionAcrossDecisions(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, nil, server.Options{})
	token := f.token(t, apiCLI, "alice")
	before := f.idp.Introspections()
	release := f.idp.HoldIntrospection()
	defer release()
	// Many decisions arrive while the first introspection is in flight.
	// Whether each one waits on it or comes after its answer is cached,
	// none may ask again; that the waiting works is shown deterministically
	// in internal/bearer (TestVerify_ConcurrentRequestsForOneToken_...).
	const concurrent = 12
	statuses := make(chan int, concurrent)
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/auth/verify"
			if i%2 == 1 {
				path = "/auth/forward"
			}
			statuses <- f.call(t, http.MethodGet, path, token, traefik(http.MethodGet)...).StatusCode
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.idp.Introspections() == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // most of the others reach the single flight (not needed to pass)
	if n := f.idp.Introspections() - before; n != 1 || len(statuses) != 0 {
		t.Fatalf("while the first call is held: %d introspection calls, %d decisions answered; want 1 and none", n, len(statuses))
	}
	release()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("a concurrent decision answered %d", s)
		}
	}
	for range 20 { // and later ones are answered from the cache
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify?roles=admin", token, nginx()...), http.StatusOK)
	}
	if n := f.idp.Introspections() - before; n != 1 {
		t.Fatalf("%d decisions on a cold opaque token made %d introspection calls, want exactly 1", concurrent+20, n)
	}
}

// TestBearer_HostileTokensEndToEnd: representatives of the hostile tokens
// internal/bearer tests one by one, through the endpoint.
func TestBearer_HostileTokensEndToEnd(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, nil, server.Options{})
	good := f.token(t, f.self, "alice")
	wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", good, nginx()...), http.StatusOK)
	header := func(v map[string]any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	parts := strings.Split(good, ".")
	for name, token := range map[string]string{
		"expired":            signedBy(t, f, nil, map[string]any{"exp": time.Now().Add(-time.Second).Unix()}),
		"wrong audience":     f.token(t, apiJWT, "alice"), // a real token of another application
		"alg none":           header(map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".",
		"alg none, signed":   header(map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "." + parts[2],
		"payload swapped in": parts[0] + "." + strings.Split(signedBy(t, f, nil, map[string]any{"sub": bobID}), ".")[1] + "." + parts[2],
	} {
		t.Run(name, func(t *testing.T) {
			wantInvalidToken(t, f.call(t, http.MethodGet, "/auth/forward", token, traefik(http.MethodGet, navigation...)...))
		})
	}
	// A token that expires while in use: allowed, then refused.
	expiring := signedBy(t, f, nil, map[string]any{"exp": time.Now().Add(time.Minute).Unix()})
	wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", expiring, nginx()...), http.StatusOK)
	f.clock.Advance(2 * time.Minute)
	wantInvalidToken(t, f.call(t, http.MethodGet, "/auth/forward", expiring, traefik(http.MethodGet)...))
	// A token in the query string is no credential at all: the request has
	// no session, so it is sent to sign in like any other.
	r := ask(t, testenv.NewBrowser(t), http.MethodGet, f.app.URL+"/auth/forward?access_token="+good, traefik(http.MethodGet, navigation...)...)
	if r.StatusCode == http.StatusOK {
		t.Fatal("a token in the query string was accepted")
	}
}

func TestBearer_SpanSaysWhichCredentialAndWhetherTheCacheAnswered(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(telemetry.Providers{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))})
	if err != nil {
		t.Fatal(err)
	}
	f := setupBearer(t, nil, server.Options{Telemetry: tel})
	alice := f.signedIn(t, "alice")
	jwt, opaque := f.token(t, f.self, "alice"), f.token(t, apiCLI, "alice")
	spans.Reset()
	ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...)
	f.call(t, http.MethodGet, "/auth/verify", jwt, nginx()...)
	f.call(t, http.MethodGet, "/auth/verify?roles=admin", opaque, nginx()...)
	f.call(t, http.MethodGet, "/auth/verify?roles=nobody", opaque, nginx()...)
	f.call(t, http.MethodGet, "/auth/verify", "garbage.token.x", nginx()...)
	f.call(t, http.MethodGet, "/auth/verify", "", nginx()...) // "Bearer" alone

	var got []string
	stepParents := map[string]bool{}
	for _, s := range spans.Ended() {
		switch s.Name() {
		case "auth.verify":
			a := map[string]string{}
			for _, kv := range s.Attributes() {
				a[string(kv.Key)] = kv.Value.String()
			}
			got = append(got, strings.TrimSpace(a["auth.outcome"]+" "+a["auth.credential"]+" "+a["auth.introspection.cached"]+" "+a["auth.failure.reason"]))
			stepParents[s.SpanContext().SpanID().String()] = true
		}
	}
	want := []string{
		"allowed session",
		"allowed jwt",
		"allowed opaque false",
		"forbidden opaque true missing_role",
		"unauthenticated jwt  malformed",
		"unauthenticated bearer  malformed",
	}
	if !slices.Equal(got, want) {
		t.Errorf("auth.verify spans:\n got %q\nwant %q", got, want)
	}
	steps := 0
	for _, s := range spans.Ended() {
		if s.Name() == "auth.bearer.verify" {
			steps++
			if !stepParents[s.Parent().SpanID().String()] {
				t.Error("auth.bearer.verify outside auth.verify")
			}
		}
	}
	if steps != 5 {
		t.Errorf("%d auth.bearer.verify steps, want one per bearer decision (5)", steps)
	}
}

func TestBearer_OwnPagesTakeSessionsOnly(t *testing.T) {
	t.Parallel()
	f := setupBearer(t, nil, server.Options{})
	token := f.token(t, f.self, "alice")
	for _, path := range []string{"/auth/userinfo", "/profile", "/admin"} {
		r := f.call(t, http.MethodGet, path, token)
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) ||
			!strings.Contains(r.Body, "session_required") || r.Header.Get("Location") != "" {
			t.Errorf("%s with a bearer token only: %d %v %q", path, r.StatusCode, r.Header, r.Body)
		}
	}
	// With a session, the page is the session's, token or not.
	alice := f.signedIn(t, "alice")
	r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/userinfo", "Authorization", "Bearer "+token)
	wantStatus(t, r, http.StatusOK)
	// And a signed-out browser is still sent to sign in.
	if r := testenv.NewBrowser(t).Get(f.app.URL + "/profile"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("/profile without anything: %s", r)
	}
}

// TestBearer_ClientInventingOpaqueTokensIsThrottledAndNobodyElse: each
// made-up opaque token would cost a call to the provider, so a client's
// tokens the provider refuses are charged to it (RATE_LIMIT_BURST at
// once, then RATE_LIMIT_PER_MINUTE), client by client as the trusted
// proxy names them in X-Forwarded-For. Past its budget, a token that
// needs a call gets 429 with Retry-After and is not introspected; cached
// answers and JWTs still pass; tokens that work give their charge back,
// so another client's new tokens are never refused.
func TestBearer_ClientInventingOpaqueTokensIsThrottledAndNobodyElse(t *testing.T) {
	t.Parallel()
	const burst = 3
	f := setupBearer(t, func(c *config.Config) {
		c.RateLimit, c.RateLimitBurst = 1, burst // one token a minute: no refill during the test
	}, server.Options{})
	mallory, alice := []string{"X-Forwarded-For", "203.0.113.66"}, []string{"X-Forwarded-For", "203.0.113.7"}
	cached := f.token(t, apiCLI, "alice")
	jwt := f.token(t, f.self, "alice")
	wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", cached, nginx(mallory...)...), http.StatusOK)

	calls := f.idp.Introspections()
	for i := range burst {
		wantInvalidToken(t, f.call(t, http.MethodGet, "/auth/verify", fmt.Sprintf("made-up-%d", i), nginx(mallory...)...))
	}
	if n := f.idp.Introspections() - calls; n != burst {
		t.Fatalf("%d made-up tokens cost %d introspections, want %d", burst, n, burst)
	}
	fresh := f.token(t, apiCLI, "alice") // good, but not cached: it needs a call too
	for _, tc := range []struct {
		path, token string
		headers     []string
	}{
		{"/auth/verify", "made-up-next", nginx(mallory...)},
		{"/auth/forward", "made-up-next", traefik(http.MethodGet, append(navigation, mallory...)...)},
		{"/auth/verify", fresh, nginx(mallory...)},
	} {
		r := f.call(t, http.MethodGet, tc.path, tc.token, tc.headers...)
		wantStatus(t, r, http.StatusTooManyRequests)
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 ||
			!strings.Contains(r.Body, `"error":"rate_limited"`) || r.Header.Get("Content-Type") != "application/json" ||
			r.Header.Get("WWW-Authenticate") != "" || r.Header.Get("Location") != "" || r.Header.Get(forward.HeaderUser) != "" {
			t.Errorf("%s: a throttled answer that is not one: %v %q", tc.path, r.Header, r.Body)
		}
	}
	if n := f.idp.Introspections() - calls; n != burst {
		t.Fatalf("throttled requests were introspected: %d calls, want %d", n, burst)
	}
	wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", cached, nginx(mallory...)...), http.StatusOK)
	wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", jwt, nginx(mallory...)...), http.StatusOK)

	// Another client's new tokens: more than its burst, all good, none refused.
	for range burst + 2 {
		wantStatus(t, f.call(t, http.MethodGet, "/auth/verify", f.token(t, apiCLI, "alice"), nginx(alice...)...), http.StatusOK)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "203.0.113.66") || strings.Contains(logs, fresh) || strings.Contains(logs, "made-up-next") {
		t.Errorf("the throttled client is not named in the log, or a token is:\n%s", logs)
	}
}
