package forwardauth_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/redirect"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

const (
	pw      = devidp.DemoPassword
	aliceID = "300000000000000001" // admin, viewer
	bobID   = "300000000000000002" // viewer
	appHost = "app.example.test"   // a protected app, in ALLOWED_REDIRECT_HOSTS
	deep    = "http://" + appHost + "/d/1?x=2&y=%2F"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// fixture is a real provider and a real Gatehouse whose proxies are on
// loopback (this test process speaks as the proxy) and whose sign-ins may
// return to appHost.
type fixture struct {
	idp   *testenv.IdP
	app   *testenv.App
	logs  *testenv.SyncBuffer
	clock *testenv.Clock
}

func setup(t *testing.T, idpOpts testenv.IdPOptions, modify func(*config.Config), opts server.Options) *fixture {
	t.Helper()
	f := &fixture{logs: &testenv.SyncBuffer{}, clock: &testenv.Clock{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	hosts, err := redirect.ParseHosts(appHost)
	if err != nil {
		t.Fatal(err)
	}
	f.idp, f.app = testenv.Setup(t, idpOpts, testenv.AppOptions{Options: opts, Modify: func(c *config.Config) {
		c.TrustedProxies = loopback
		c.AllowedRedirectHosts = hosts
		if modify != nil {
			modify(c)
		}
	}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gatehouse log:\n%s", f.logs.String())
		}
	})
	return f
}

// signedIn is a browser with a session of user.
func (f *fixture) signedIn(t *testing.T, user string) *testenv.Browser {
	t.Helper()
	b := testenv.NewBrowser(t)
	if r := b.Login(f.app, user, pw); r.StatusCode != http.StatusOK {
		t.Fatalf("login as %s landed on %s", user, r)
	}
	return b
}

// ask sends what a proxy sends to path (headers as name, value pairs).
func ask(t *testing.T, b *testenv.Browser, method, target string, headers ...string) *testenv.Response {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "Host") {
			// Envoy keeps the original Host; the jar would look up cookies
			// for that host (Go 1.26), the browser sent Gatehouse's.
			req.Host = headers[i+1]
			for _, c := range b.Jar.Cookies(req.URL) {
				req.AddCookie(c)
			}
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	return b.Do(req)
}

// Headers a browser's navigation and a script's fetch carry, as every
// proxy passes them on.
var (
	navigation = []string{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	script     = []string{"Accept", "application/json", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Dest", "empty"}
)

// nginx is what the documented nginx location sends about a GET of deep.
func nginx(extra ...string) []string {
	return append([]string{"X-Original-URL", deep, "X-Original-Method", "GET"}, extra...)
}

// traefik is what Traefik and Caddy send about method on deep.
func traefik(method string, extra ...string) []string {
	u, _ := url.Parse(deep)
	return append([]string{"X-Forwarded-Method", method, "X-Forwarded-Proto", "http", "X-Forwarded-Host", appHost,
		"X-Forwarded-Uri", u.RequestURI()}, extra...)
}

func wantStatus(t *testing.T, r *testenv.Response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body %q", r.URL, r.StatusCode, status, r.Body)
	}
}

// assertionClaims verifies an X-Gatehouse-Assertion with the app's
// published key set and returns its claims.
// decisionCounts reads the decision counter from reader, summed by the
// attributes named (joined by a space): outcome, host or both.
func decisionCounts(t *testing.T, reader sdkmetric.Reader, by ...attribute.Key) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricForwardDecisions {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				key := make([]string, len(by))
				for i, k := range by {
					v, _ := dp.Attributes.Value(k)
					key[i] = v.AsString()
				}
				counts[strings.Join(key, " ")] += dp.Value
			}
		}
	}
	return counts
}

// metered is telemetry whose meter provider reports to the returned reader.
func metered(t *testing.T) (*telemetry.Telemetry, sdkmetric.Reader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	tel, err := telemetry.New(telemetry.Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	return tel, reader
}

func assertionClaims(t *testing.T, f *fixture, token string) map[string]any {
	t.Helper()
	resp, err := http.Get(f.app.URL + "/auth/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("key set: %v (%d keys)", err, len(set.Keys))
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion %q: %v", token, err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("no published key for kid %q", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMain(m *testing.M) {
	// The example provider logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func TestVerify_NginxContract(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	alice, bob, nobody := f.signedIn(t, "alice"), f.signedIn(t, "bob"), testenv.NewBrowser(t)

	t.Run("allowed: 200 with identity headers and an assertion for the original host", func(t *testing.T) {
		r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify?roles=admin", nginx(navigation...)...)
		wantStatus(t, r, http.StatusOK)
		for h, want := range map[string]string{
			forward.HeaderUser: aliceID, forward.HeaderEmail: "alice@" + devidp.DemoOrgDomain,
			forward.HeaderPreferredUsername: "alice", forward.HeaderGroups: "admin,viewer", forward.HeaderAccessToken: "",
		} {
			if got := r.Header.Values(h); len(got) != 1 || got[0] != want {
				t.Errorf("%s = %q, want exactly %q", h, got, want)
			}
		}
		c := assertionClaims(t, f, r.Header.Get(forward.HeaderAssertion))
		exp, iat := c["exp"].(float64), c["iat"].(float64)
		if c["aud"] != appHost || c["sub"] != aliceID || c["iss"] != f.app.URL || exp-iat > 60 || exp-iat <= 0 ||
			!slices.Equal(toStrings(c["roles"]), []string{"admin", "viewer"}) {
			t.Errorf("assertion claims %v", c)
		}
		if r.Header.Get("Location") != "" || r.Body != "" {
			t.Errorf("a 200 with Location %q, body %q", r.Header.Get("Location"), r.Body)
		}
	})

	t.Run("without a session: 401, never a redirect, even for a navigation", func(t *testing.T) {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := ask(t, nobody, method, f.app.URL+"/auth/verify", nginx(navigation...)...)
			wantStatus(t, r, http.StatusUnauthorized)
			if r.Header.Get("Location") != "" || r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: Location %q, WWW-Authenticate %q", method, r.Header.Get("Location"), r.Header.Get("WWW-Authenticate"))
			}
		}
	})

	t.Run("a failed role rule: 403, the other role any one of", func(t *testing.T) {
		wantStatus(t, ask(t, bob, http.MethodGet, f.app.URL+"/auth/verify?roles=admin", nginx(navigation...)...), http.StatusForbidden)
		wantStatus(t, ask(t, bob, http.MethodGet, f.app.URL+"/auth/verify?roles=admin,viewer", nginx()...), http.StatusOK)
		wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify?org="+devidp.DemoOrgID, nginx()...), http.StatusOK)
		wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify?roles=admin&org=999", nginx()...), http.StatusForbidden)
	})

	t.Run("only GET and HEAD", func(t *testing.T) {
		r := ask(t, alice, http.MethodPost, f.app.URL+"/auth/verify", nginx()...)
		wantStatus(t, r, http.StatusMethodNotAllowed)
	})

	t.Run("without X-Original-URL: allowed, but no assertion (no host to address it to)", func(t *testing.T) {
		r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify")
		wantStatus(t, r, http.StatusOK)
		if r.Header.Get(forward.HeaderUser) != aliceID || r.Header.Get(forward.HeaderAssertion) != "" {
			t.Errorf("user %q, assertion %q", r.Header.Get(forward.HeaderUser), r.Header.Get(forward.HeaderAssertion))
		}
	})
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

func TestForward_TraefikAndCaddyContract(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	alice, bob, nobody := f.signedIn(t, "alice"), f.signedIn(t, "bob"), testenv.NewBrowser(t)
	signIn := f.app.URL + "/auth/signin?rd=" + url.QueryEscape(deep)

	t.Run("a navigation without a session: 302 to sign in, carrying the deep link", func(t *testing.T) {
		r := ask(t, nobody, http.MethodGet, f.app.URL+"/auth/forward?", traefik(http.MethodGet, navigation...)...)
		wantStatus(t, r, http.StatusFound)
		if got := r.Header.Get("Location"); got != signIn {
			t.Errorf("Location %q, want %q", got, signIn)
		}
	})

	t.Run("answers a browser may see carry the security headers, the 200 only the proxy reads does not", func(t *testing.T) {
		for _, r := range []*testenv.Response{
			ask(t, nobody, http.MethodGet, f.app.URL+"/auth/forward", traefik(http.MethodGet, navigation...)...),
			ask(t, nobody, http.MethodGet, f.app.URL+"/auth/forward", traefik(http.MethodGet, script...)...),
			ask(t, bob, http.MethodGet, f.app.URL+"/auth/forward?roles=admin", traefik(http.MethodGet, navigation...)...),
			ask(t, alice, http.MethodGet, f.app.URL+"/auth/forward?roles=", traefik(http.MethodGet)...),
		} {
			if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Cache-Control") != "no-store" ||
				r.Header.Get("Content-Security-Policy") == "" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%d answer without the security headers: %v", r.StatusCode, r.Header)
			}
		}
		if r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/forward", traefik(http.MethodGet)...); r.StatusCode != http.StatusOK ||
			r.Header.Get("Content-Security-Policy") != "" {
			t.Errorf("the 200: %d %v", r.StatusCode, r.Header)
		}
	})

	t.Run("a script without a session: 401 with WWW-Authenticate and where to sign in", func(t *testing.T) {
		for _, h := range [][]string{traefik(http.MethodGet, script...), traefik(http.MethodPost, navigation...),
			traefik(http.MethodGet, "Accept", "text/html", "X-Requested-With", "XMLHttpRequest")} {
			r := ask(t, nobody, http.MethodGet, f.app.URL+"/auth/forward", h...)
			wantStatus(t, r, http.StatusUnauthorized)
			var body struct{ Error, Signin_URL string }
			if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.Error != "unauthenticated" || body.Signin_URL != signIn {
				t.Errorf("body %q (%v)", r.Body, err)
			}
			if r.Header.Get("WWW-Authenticate") == "" || r.Header.Get("Location") != "" {
				t.Errorf("headers %v", r.Header)
			}
		}
	})

	t.Run("a failed rule: 403 page from Gatehouse for a browser, JSON for a script", func(t *testing.T) {
		r := ask(t, bob, http.MethodGet, f.app.URL+"/auth/forward?roles=admin", traefik(http.MethodGet, navigation...)...)
		wantStatus(t, r, http.StatusForbidden)
		if !strings.Contains(r.Body, "You do not have access") || !strings.Contains(r.Body, `href="`+f.app.URL+`/static/app.css"`) ||
			!strings.Contains(r.Body, `href="`+f.app.URL+`/auth/logout">Sign out`) {
			t.Errorf("403 page:\n%s", r.Body)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src "+f.app.URL) {
			t.Errorf("CSP %q does not let the page on the app's host load Gatehouse's stylesheet", csp)
		}
		r = ask(t, bob, http.MethodGet, f.app.URL+"/auth/forward?roles=admin", traefik(http.MethodGet, script...)...)
		wantStatus(t, r, http.StatusForbidden)
		if r.Body != "{\"error\":\"forbidden\"}\n" || r.Header.Get(forward.HeaderUser) != "" {
			t.Errorf("403 for a script: %q, user header %q", r.Body, r.Header.Get(forward.HeaderUser))
		}
	})

	t.Run("allowed: 200 (not 202) with the identity, for any original method", func(t *testing.T) {
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/forward?roles=admin", traefik(method)...)
			wantStatus(t, r, http.StatusOK)
			if r.Header.Get(forward.HeaderUser) != aliceID || assertionClaims(t, f, r.Header.Get(forward.HeaderAssertion))["aud"] != appHost {
				t.Errorf("%s: headers %v", method, r.Header)
			}
		}
	})

	t.Run("a host outside ALLOWED_REDIRECT_HOSTS: sign in without a return URL", func(t *testing.T) {
		r := ask(t, nobody, http.MethodGet, f.app.URL+"/auth/forward", "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "http",
			"X-Forwarded-Host", "elsewhere.example", "X-Forwarded-Uri", "/x", "Sec-Fetch-Mode", "navigate")
		wantStatus(t, r, http.StatusFound)
		if got := r.Header.Get("Location"); got != f.app.URL+"/auth/signin" {
			t.Errorf("Location %q", got)
		}
		if !strings.Contains(f.logs.String(), "not in ALLOWED_REDIRECT_HOSTS") {
			t.Error("the refused return host is not logged")
		}
	})
}

// TestEnvoy_ExtAuthzContract: Envoy's ext_authz HTTP service with
// path_prefix "/auth/forward;roles=admin" appends the original path and
// query, keeps the method and Host, forwards allowed_headers, and lets
// only 200 pass.
func TestEnvoy_ExtAuthzContract(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	alice, bob, nobody := f.signedIn(t, "alice"), f.signedIn(t, "bob"), testenv.NewBrowser(t)
	envoy := func(b *testenv.Browser, method, prefix, original string, extra ...string) *testenv.Response {
		return ask(t, b, method, f.app.URL+prefix+original, append([]string{"Host", appHost, "X-Forwarded-Proto", "http"}, extra...)...)
	}

	t.Run("allowed: exactly 200, method and original path kept, matrix rules", func(t *testing.T) {
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			r := envoy(alice, method, "/auth/forward;roles=admin", "/api/items/7?x=1")
			wantStatus(t, r, http.StatusOK)
			if c := assertionClaims(t, f, r.Header.Get(forward.HeaderAssertion)); c["aud"] != appHost || c["sub"] != aliceID {
				t.Errorf("%s: assertion %v", method, c)
			}
		}
	})

	t.Run("a double slash in the original path is decided, not redirected", func(t *testing.T) {
		r := envoy(alice, http.MethodGet, "/auth/forward;roles=admin", "//a//b/../c")
		wantStatus(t, r, http.StatusOK)
	})

	t.Run("the operator's rules hold whatever the client's path or query say", func(t *testing.T) {
		for _, original := range []string{"/x?roles=viewer", "/;roles=viewer/x", "/x;roles=viewer", "/auth/forward;roles=viewer/x"} {
			if r := envoy(bob, http.MethodGet, "/auth/forward;roles=admin", original); r.StatusCode == http.StatusOK {
				t.Errorf("%s let bob through the admin rule", original)
			}
		}
		wantStatus(t, envoy(bob, http.MethodGet, "/auth/forward;roles=viewer", "/x"), http.StatusOK)
	})

	t.Run("refusals are never 200", func(t *testing.T) {
		r := envoy(nobody, http.MethodGet, "/auth/forward", "/d/1?x=2&y=%2F", navigation...)
		wantStatus(t, r, http.StatusFound)
		if got := r.Header.Get("Location"); got != f.app.URL+"/auth/signin?rd="+url.QueryEscape(deep) {
			t.Errorf("Location %q", got)
		}
		wantStatus(t, envoy(nobody, http.MethodPost, "/auth/forward", "/api", navigation...), http.StatusUnauthorized)
		wantStatus(t, envoy(bob, http.MethodGet, "/auth/forward;roles=admin", "/admin", navigation...), http.StatusForbidden)
	})

	t.Run("Traefik's headers on Envoy's path: a configuration error", func(t *testing.T) {
		wantStatus(t, envoy(alice, http.MethodGet, "/auth/forward", "/x", "X-Forwarded-Uri", "/x"), http.StatusBadRequest)
	})
}

func TestDecision_InvalidRulesAreAConfigurationErrorNeverAnAllow(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	alice := f.signedIn(t, "alice")
	for _, tc := range []struct {
		target  string
		headers []string
		status  int
	}{
		{"/auth/verify?role=admin", nginx(), http.StatusInternalServerError},
		{"/auth/verify?roles=", nginx(), http.StatusInternalServerError},
		{"/auth/verify?roles=adm%20in", nginx(), http.StatusInternalServerError},
		{"/auth/verify?roles=a&roles=b", nginx(), http.StatusInternalServerError},
		{"/auth/forward;roles=/x", []string{"Host", appHost}, http.StatusInternalServerError},
		{"/auth/forward;nope=1/x", []string{"Host", appHost}, http.StatusInternalServerError},
		// Caddy with `uri /auth/forward` (no "?") passes the client's query on.
		{"/auth/forward?roles=admin", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", "/x?roles=admin"}, http.StatusInternalServerError},
		// Unusable proxy headers.
		{"/auth/forward", []string{"X-Forwarded-Host", appHost, "X-Forwarded-Host", "evil.example", "X-Forwarded-Uri", "/"}, http.StatusBadRequest},
		{"/auth/verify", []string{"X-Original-URL", "javascript:alert(1)"}, http.StatusBadRequest},
	} {
		r := ask(t, alice, http.MethodGet, f.app.URL+tc.target, tc.headers...)
		if r.StatusCode != tc.status || r.Header.Get(forward.HeaderUser) != "" {
			t.Errorf("%s %v: %d (user %q), want %d", tc.target, tc.headers, r.StatusCode, r.Header.Get(forward.HeaderUser), tc.status)
		}
	}
	if !strings.Contains(f.logs.String(), "forward-auth: configuration error") || !strings.Contains(f.logs.String(), `unknown parameter \"role\"`) {
		t.Errorf("the cause is not in the log:\n%s", f.logs.String())
	}
}

// TestDecision_ClientsOddURLsAreNotAMisconfiguration: browsers send a
// backslash or a stray '%' unescaped in a query (?q=C:\dir, ?q=100%),
// scripts any byte nginx and Caddy pass on (a raw fragment, UTF-8), and
// every proxy passes them on. Such a request is decided like any other,
// never counted or logged as the proxy's misconfiguration (the operators'
// alert); a backslash in a query comes back intact after sign-in, and the
// others leave no deep link (a browser sent back to "/\x" would read
// "//x"): that sign-in ends on the post-login page.
func TestDecision_ClientsOddURLsAreNotAMisconfiguration(t *testing.T) {
	t.Parallel()
	tel, reader := metered(t)
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{Telemetry: tel})
	alice, nobody := f.signedIn(t, "alice"), testenv.NewBrowser(t)
	const inQuery = "http://" + appHost + `/search?q=C:\dir&re=\d+`
	signIn := f.app.URL + "/auth/signin"
	cases := []struct {
		name, target string
		headers      []string
		status       int
		signIn       string // where a refusal sends the user
	}{
		{"nginx, in the query", "/auth/verify", []string{"X-Original-URL", inQuery}, http.StatusUnauthorized, signIn + "?rd=" + url.QueryEscape(inQuery)},
		{"Traefik/Caddy, in the query", "/auth/forward", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", `/search?q=C:\dir&re=\d+`},
			http.StatusFound, signIn + "?rd=" + url.QueryEscape(inQuery)},
		{"Envoy, in the query", `/auth/forward/search?q=C:\dir&re=\d+`, []string{"Host", appHost, "X-Forwarded-Proto", "http"},
			http.StatusFound, signIn + "?rd=" + url.QueryEscape(inQuery)},
		{"nginx, in the path", "/auth/verify", []string{"X-Original-URL", "http://" + appHost + `/\evil.example/`}, http.StatusUnauthorized, signIn},
		{"Traefik/Caddy, in the path", "/auth/forward", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", `/\evil.example/`},
			http.StatusFound, signIn},
		{"nginx, a stray percent sign in the query", "/auth/verify", []string{"X-Original-URL", "http://" + appHost + "/search?q=100%"}, http.StatusUnauthorized, signIn},
		{"Caddy, a stray percent sign in the query", "/auth/forward", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", "/search?q=100%"},
			http.StatusFound, signIn},
		{"nginx, a raw fragment", "/auth/verify", []string{"X-Original-URL", "http://" + appHost + "/public#/../admin"}, http.StatusUnauthorized, signIn},
		{"Caddy, raw UTF-8 in the path", "/auth/forward", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", "/caf\xc3\xa9"},
			http.StatusFound, signIn},
		{"Caddy, a deep link longer than a return URL may be", "/auth/forward", []string{"X-Forwarded-Proto", "http", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", "/" + strings.Repeat("a", redirect.MaxLength)},
			http.StatusFound, signIn},
	}
	for _, tc := range cases {
		r := ask(t, nobody, http.MethodGet, f.app.URL+tc.target, append(tc.headers, navigation...)...)
		if r.StatusCode != tc.status {
			t.Errorf("%s without a session: %d %q, want %d", tc.name, r.StatusCode, r.Body, tc.status)
			continue
		}
		got := r.Header.Get("Location")
		if tc.status == http.StatusUnauthorized {
			var body struct {
				SigninURL string `json:"signin_url"`
			}
			_ = json.Unmarshal([]byte(r.Body), &body)
			got = body.SigninURL
		}
		if got != tc.signIn {
			t.Errorf("%s without a session: sent to %q, want %q", tc.name, got, tc.signIn)
		}
		wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+tc.target, tc.headers...), http.StatusOK)
	}

	outcomes := decisionCounts(t, reader, telemetry.AttrOutcome)
	if want := map[string]int64{"unauthenticated": int64(len(cases)), "allowed": int64(len(cases))}; !maps.Equal(outcomes, want) {
		t.Errorf("decision outcomes %v, want %v", outcomes, want)
	}
	if logs := f.logs.String(); strings.Contains(logs, "configuration error") || strings.Contains(logs, "not in ALLOWED_REDIRECT_HOSTS") {
		t.Errorf("a client's odd URL was logged as the operator's mistake:\n%s", logs)
	}

	// The round trip: the query's backslash comes back as the page sent it.
	b := testenv.NewBrowser(t)
	page := b.Follow(ask(t, b, http.MethodGet, f.app.URL+cases[1].target, append(cases[1].headers, navigation...)...))
	action, fields := testenv.Form(t, page.Body)
	back := b.LoginAtProvider(b.PostForm(f.app.URL+action, fields), "bob", pw)
	if got := b.Get(back.Header.Get("Location")).Header.Get("Location"); got != inQuery {
		t.Errorf("after sign-in the callback sent the browser to %q, want %q", got, inQuery)
	}
}

// TestDecision_ClientsBadHostIsRejectedNotMisconfigured: the original host
// is the client's own Host header in every adapter, and a catch-all route
// passes on whatever a client wrote there. A host that is no host name is
// refused (400, no identity, even for a signed-in user) and counted as
// rejected, never logged or counted as the proxy's misconfiguration.
func TestDecision_ClientsBadHostIsRejectedNotMisconfigured(t *testing.T) {
	t.Parallel()
	tel, reader := metered(t)
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{Telemetry: tel})
	alice := f.signedIn(t, "alice")
	cases := []struct {
		name, target string
		headers      []string
	}{
		{"nginx, a '?' in the Host", "/auth/verify", []string{"X-Original-URL", "http://app.example.com?x/d/1"}},
		{"nginx, userinfo in the Host", "/auth/verify", []string{"X-Original-URL", "http://alice@app.example.com/d/1"}},
		{"Traefik/Caddy, a label DNS refuses", "/auth/forward", []string{"X-Forwarded-Host", "-app.example.com", "X-Forwarded-Uri", "/d/1"}},
		{"Envoy, a port out of range", "/auth/forward/d/1", []string{"Host", "app.example.com:99999"}},
	}
	for _, tc := range cases {
		r := ask(t, alice, http.MethodGet, f.app.URL+tc.target, tc.headers...)
		if r.StatusCode != http.StatusBadRequest || r.Header.Get(forward.HeaderUser) != "" || strings.Contains(r.Body, "configuration") {
			t.Errorf("%s: %d %q (user %q), want 400 without identity, not blaming the configuration", tc.name, r.StatusCode, r.Body, r.Header.Get(forward.HeaderUser))
		}
	}
	outcomes := decisionCounts(t, reader, telemetry.AttrOutcome)
	if want := map[string]int64{"rejected": int64(len(cases))}; !maps.Equal(outcomes, want) {
		t.Errorf("decision outcomes %v, want %v", outcomes, want)
	}
	if logs := f.logs.String(); strings.Contains(logs, "configuration error") {
		t.Errorf("a client's Host was logged as the operator's mistake:\n%s", logs)
	}
}

// fromAddr is a browser whose connections come from local, another
// loopback address than the trusted proxy's.
func fromAddr(t *testing.T, b *testenv.Browser, local string) *testenv.Browser {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	b.Transport = &http.Transport{DialContext: d.DialContext}
	return b
}

func TestDecision_ProxyHeadersFromAnUntrustedPeerAreIgnored(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	alice := f.signedIn(t, "alice")
	fromAddr(t, alice, "127.0.0.2")
	nobody := fromAddr(t, testenv.NewBrowser(t), "127.0.0.2")
	spoof := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", appHost, "X-Forwarded-Uri", "/d/1",
		"X-Original-URL", "https://" + appHost + "/d/1"}

	// No deep link to return to, and no assertion for a host the client named.
	r := ask(t, nobody, http.MethodGet, f.app.URL+"/auth/forward", append(spoof, navigation...)...)
	wantStatus(t, r, http.StatusFound)
	if got := r.Header.Get("Location"); got != f.app.URL+"/auth/signin" {
		t.Errorf("Location %q: the spoofed original URL was believed", got)
	}
	for _, path := range []string{"/auth/forward", "/auth/verify"} {
		r = ask(t, alice, http.MethodGet, f.app.URL+path, spoof...)
		wantStatus(t, r, http.StatusOK)
		if a := r.Header.Get(forward.HeaderAssertion); a != "" {
			t.Errorf("%s: an assertion for a host an untrusted client named: %v", path, assertionClaims(t, f, a))
		}
	}
	if !strings.Contains(f.logs.String(), "not in TRUSTED_PROXIES ignored") {
		t.Errorf("the ignored header is not logged:\n%s", f.logs.String())
	}
}

// TestSignIn_FromAProtectedAppEndsOnItsDeepLink is the round trip at HTTP
// level: a navigation without a session → Gatehouse's sign-in page (one
// click) → the provider → the callback, which sends the browser to the
// very page first asked for, on the app's own host.
func TestSignIn_FromAProtectedAppEndsOnItsDeepLink(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	b := testenv.NewBrowser(t)
	toSignIn := ask(t, b, http.MethodGet, f.app.URL+"/auth/forward", traefik(http.MethodGet, navigation...)...)
	wantStatus(t, toSignIn, http.StatusFound)
	page := b.Follow(toSignIn)
	action, fields := testenv.Form(t, page.Body)
	if action != "/auth/signin/zitadel" || fields.Get("callbackUrl") != deep {
		t.Fatalf("sign-in page form %s %v", action, fields)
	}
	back := b.LoginAtProvider(b.PostForm(f.app.URL+action, fields), "bob", pw)
	landed := b.Get(back.Header.Get("Location"))
	wantStatus(t, landed, http.StatusSeeOther)
	if got := landed.Header.Get("Location"); got != deep {
		t.Fatalf("the callback sent the browser to %q, want the deep link %q", got, deep)
	}
	wantStatus(t, ask(t, b, http.MethodGet, f.app.URL+"/auth/forward", traefik(http.MethodGet, navigation...)...), http.StatusOK)

	// A return URL the policy refuses ends on the post-login page.
	b2 := testenv.NewBrowser(t)
	back = b2.LoginAtProvider(b2.PostForm(f.app.URL+"/auth/signin/zitadel", url.Values{"callbackUrl": {"http://evil.example/"}}), "bob", pw)
	if got := b2.Get(back.Header.Get("Location")).Header.Get("Location"); got != "/profile" {
		t.Errorf("a refused return URL led to %q", got)
	}
}

func TestSignInPageSkip_StraightOnToTheProvider(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, func(c *config.Config) { c.SigninPage = "skip" }, server.Options{})
	page := f.app.URL + "/auth/signin?rd=" + url.QueryEscape(deep)

	b := testenv.NewBrowser(t)
	toIdP := b.Get(page)
	if loc := toIdP.Header.Get("Location"); toIdP.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, f.idp.URL) {
		t.Fatalf("with SIGNIN_PAGE=skip the sign-in page answered %s, want 303 to the provider", toIdP)
	}
	landed := b.Get(b.LoginAtProvider(toIdP, "alice", pw).Header.Get("Location"))
	if got := landed.Header.Get("Location"); got != deep {
		t.Fatalf("landed on %q, want %q", got, deep)
	}

	// The page still shows: for a visit of its own, after an error, for a
	// return URL the policy refuses, and when this browser has a session
	// here (the app did not get it: skipping would loop).
	for name, tc := range map[string]struct {
		b *testenv.Browser
		u string
	}{
		"no return URL":  {testenv.NewBrowser(t), f.app.URL + "/auth/signin"},
		"after an error": {testenv.NewBrowser(t), page + "&error=access_denied"},
		"refused return": {testenv.NewBrowser(t), f.app.URL + "/auth/signin?rd=" + url.QueryEscape("https://evil.example/")},
		"signed in":      {b, page},
	} {
		if r := tc.b.Get(tc.u); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `id="signin"`) {
			t.Errorf("%s: %s, want the sign-in page", name, r)
		}
	}
}

func TestDecision_RefreshedSessionCookieIsOnTheAnswer(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{TokenTTL: 5 * time.Minute}, nil, server.Options{RefreshSkew: 30 * time.Second})
	alice := f.signedIn(t, "alice")
	before := f.idp.Refreshes()
	f.clock.Advance(6 * time.Minute) // the access token has expired
	r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...)
	wantStatus(t, r, http.StatusOK)
	if f.idp.Refreshes() != before+1 {
		t.Fatalf("refreshes %d → %d, want one inside the decision", before, f.idp.Refreshes())
	}
	var fresh *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "gatehouse" && c.MaxAge > 0 {
			fresh = c
		}
	}
	if fresh == nil {
		t.Fatalf("no new session cookie on the 200: %v", r.Header["Set-Cookie"])
	}
	// The browser (through the proxy) keeps the new cookie, whose token is
	// new (the provider's clock did not move: move the app's back).
	f.clock.Advance(-6 * time.Minute)
	if c := alice.Cookie(f.app.URL, "gatehouse"); c == nil || c.Value != fresh.Value {
		t.Fatal("the browser did not keep the new cookie")
	}
	wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/forward", traefik(http.MethodGet)...), http.StatusOK)
	if f.idp.Refreshes() != before+1 {
		t.Errorf("the refreshed session was refreshed again")
	}
}

func TestDecision_SessionStoreDownIs503ThenRecovers(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	f := setup(t, testenv.IdPOptions{}, testenv.UseRedis(srv.URL(), "gatehouse:"), server.Options{})
	alice := f.signedIn(t, "alice")
	wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...), http.StatusOK)
	srv.Stop()
	for _, path := range []string{"/auth/verify", "/auth/forward"} {
		r := ask(t, alice, http.MethodGet, f.app.URL+path, traefik(http.MethodGet, navigation...)...)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.Header.Get("Retry-After") == "" || r.Header.Get(forward.HeaderUser) != "" {
			t.Errorf("%s: 503 headers %v", path, r.Header)
		}
	}
	srv.Start() // empty, like a restarted Redis without persistence: its record went with it
	deadline := time.Now().Add(5 * time.Second)
	for r := ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...); r.StatusCode != http.StatusUnauthorized; r = ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...) {
		if time.Now().After(deadline) {
			t.Fatalf("after Redis returned: %d, want 401 (the session is gone)", r.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantStatus(t, ask(t, f.signedIn(t, "alice"), http.MethodGet, f.app.URL+"/auth/verify", nginx()...), http.StatusOK)
}

// TestDecision_ProviderDownIs503NamingTheProvider: a role rule on a
// session whose roles are past ROLES_MAX_AGE, with the provider stopped,
// is a 503 that says the provider is unavailable (not the session store,
// where an operator would look first), and the log says it once, not
// once per request.
func TestDecision_ProviderDownIs503NamingTheProvider(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	alice := f.signedIn(t, "alice")
	wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify?roles=admin", nginx()...), http.StatusOK)
	f.idp.Stop()
	f.clock.Advance(6 * time.Minute) // past ROLES_MAX_AGE (5 min): the roles must be read again
	for _, path := range []string{"/auth/verify?roles=admin", "/auth/forward?roles=admin", "/auth/verify?roles=admin"} {
		r := ask(t, alice, http.MethodGet, f.app.URL+path, traefik(http.MethodGet)...)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if body := r.Body; !strings.Contains(body, `"provider_unavailable"`) || r.Header.Get("Retry-After") == "" || r.Header.Get(forward.HeaderUser) != "" {
			t.Errorf("%s: 503 %q, headers %v", path, body, r.Header)
		}
	}
	logs := f.logs.String()
	if n := strings.Count(logs, "forward-auth: session not judged"); n != 1 {
		t.Errorf("%d log lines for three refused requests of one outage, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, `"reason":"provider_unavailable"`) || strings.Contains(logs, "session store unavailable") {
		t.Errorf("the log does not name the provider:\n%s", logs)
	}
}

func TestSignOut_EndsAccessEverywhere(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"cookie", "memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			modify := func(c *config.Config) { c.SessionStore = store }
			if store == "redis" {
				modify = testenv.UseRedis(testenv.StartRedisServer(t).URL(), "gatehouse:")
			}
			f := setup(t, testenv.IdPOptions{Backchannel: true}, modify, server.Options{})
			alice := f.signedIn(t, "alice")
			wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify", nginx()...), http.StatusOK)
			// An app's "Sign out" link opens Gatehouse's page; its form posts the sign-out.
			page := alice.Get(f.app.URL + "/auth/logout")
			wantStatus(t, page, http.StatusOK)
			action, fields := testenv.Form(t, page.Body)
			end := alice.PostForm(f.app.URL+action, fields)
			wantStatus(t, end, http.StatusOK)
			for _, path := range []string{"/auth/verify", "/auth/forward"} {
				wantStatus(t, ask(t, alice, http.MethodGet, f.app.URL+path, traefik(http.MethodGet, script...)...), http.StatusUnauthorized)
			}
			if store == "cookie" {
				return // a cookie session cannot be ended server-side (docs/SESSIONS.md)
			}
			// Back-channel logout (the provider ends the session server to server).
			bob := f.signedIn(t, "bob")
			wantStatus(t, ask(t, bob, http.MethodGet, f.app.URL+"/auth/verify", nginx()...), http.StatusOK)
			if err := f.idp.BackchannelLogout(t.Context(), bobID); err != nil {
				t.Fatal(err)
			}
			wantStatus(t, ask(t, bob, http.MethodGet, f.app.URL+"/auth/verify", nginx()...), http.StatusUnauthorized)
		})
	}
}

func TestJWKS_PublishesTheAssertionKey(t *testing.T) {
	t.Parallel()
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{})
	resp, err := http.Get(f.app.URL + "/auth/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("Cache-Control") != "public, max-age=300" || !strings.Contains(string(body), `"alg":"ES256"`) {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestDecision_SpanAndCounterPerDecision(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	tel, err := telemetry.New(telemetry.Providers{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t, testenv.IdPOptions{}, nil, server.Options{Telemetry: tel})
	alice, bob, nobody := f.signedIn(t, "alice"), f.signedIn(t, "bob"), testenv.NewBrowser(t)
	elsewhere := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Host", "made-up-1.example", "X-Forwarded-Uri", "/"}
	spans.Reset()
	ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify?roles=admin", nginx()...)                                           // allowed, app host
	ask(t, alice, http.MethodGet, f.app.URL+"/auth/forward", elsewhere...)                                                    // allowed, other
	ask(t, bob, http.MethodGet, f.app.URL+"/auth/verify?roles=admin", nginx()...)                                             // forbidden
	ask(t, nobody, http.MethodGet, f.app.URL+"/auth/verify")                                                                  // unauthenticated, unknown host
	ask(t, alice, http.MethodGet, f.app.URL+"/auth/verify?roles=", nginx()...)                                                // misconfigured
	ask(t, alice, http.MethodGet, f.app.URL+"/auth/forward", "X-Forwarded-Host", "made-up-2.example", "X-Forwarded-Uri", "/") // other

	var got []string
	for _, s := range spans.Ended() {
		if s.Name() != "auth.verify" {
			continue
		}
		a := map[string]string{}
		for _, kv := range s.Attributes() {
			a[string(kv.Key)] = kv.Value.String()
		}
		got = append(got, a["auth.outcome"]+" "+a["auth.protected_host"]+" "+a["auth.failure.reason"])
		if parent := s.Parent(); !parent.IsValid() {
			t.Errorf("auth.verify is not inside the request's server span")
		}
	}
	want := []string{
		"allowed " + appHost + " ", "allowed made-up-1.example ", "forbidden " + appHost + " missing_role",
		"unauthenticated unknown no_session", "misconfigured " + appHost + " invalid_rules", "allowed made-up-2.example ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("auth.verify spans:\n got %q\nwant %q", got, want)
	}
	// The session step is a child of auth.verify.
	var verifyIDs []trace.SpanID
	for _, s := range spans.Ended() {
		if s.Name() == "auth.verify" {
			verifyIDs = append(verifyIDs, s.SpanContext().SpanID())
		}
	}
	for _, s := range spans.Ended() {
		if s.Name() == "auth.session.load" && !slices.Contains(verifyIDs, s.Parent().SpanID()) {
			t.Errorf("auth.session.load outside auth.verify")
		}
	}

	counts := decisionCounts(t, reader, telemetry.AttrOutcome, telemetry.AttrProtectedHost)
	wantCounts := map[string]int64{
		"allowed " + appHost: 1, "allowed other": 2, "forbidden " + appHost: 1, "unauthenticated unknown": 1, "misconfigured " + appHost: 1,
	}
	if !maps.Equal(counts, wantCounts) {
		t.Errorf("decision counter %v, want %v (made-up hosts must count as other)", counts, wantCounts)
	}
}
