package server_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Benchmarks of the request path, in process: no listener, no network.
// They run against a real provider (for a real session) and log as
// production does (JSON at info, here into io.Discard), so the access log's
// cost is counted. docs/PERFORMANCE.md reports their results.

// discardWriter is the cheapest ResponseWriter that still keeps headers:
// a recorder's buffers would be counted as the chain's allocations.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}
func (d *discardWriter) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	d.n += len(p)
	return len(p), nil
}
func (d *discardWriter) reset() { clear(d.h); d.status, d.n = 0, 0 }

// code is the status net/http would send: 200 when the handler set none.
func (d *discardWriter) code() int {
	if d.status == 0 {
		return http.StatusOK
	}
	return d.status
}

func productionLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// signedIn starts a provider and an app, logs alice in, and returns the
// app and a GET request for path carrying her session cookie.
func signedIn(b *testing.B, opts testenv.AppOptions, path string) (*testenv.App, *http.Request) {
	b.Helper()
	if opts.Options.Logger == nil {
		opts.Options.Logger = productionLogger()
	}
	_, app := testenv.Setup(b, testenv.IdPOptions{}, opts)
	c := aliceCookie(b, app)
	req := httptest.NewRequest(http.MethodGet, app.URL+path, nil)
	req.Header.Set("Cookie", c.Name+"="+c.Value)
	browserHeaders(req)
	return app, req
}

// aliceCookie signs alice in to app and returns her session cookie.
func aliceCookie(tb testing.TB, app *testenv.App) *http.Cookie {
	tb.Helper()
	br := testenv.NewBrowser(tb)
	if r := br.Login(app, "alice", pw); r.StatusCode != http.StatusOK {
		tb.Fatalf("login landed on %s", r)
	}
	c := br.Cookie(app.URL, "gatehouse")
	if c == nil {
		tb.Fatal("no session cookie after login")
	}
	return c
}

// browserHeaders are what a browser sends on a same-origin navigation.
func browserHeaders(r *http.Request) {
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Sec-Fetch-Dest", "document")
}

func serve(b *testing.B, h http.Handler, req *http.Request, want int) {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code() != want {
		b.Fatalf("%s %s = %d, want %d (Location %q)", req.Method, req.URL.Path, w.code(), want, w.h.Get("Location"))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
	b.StopTimer()
	if w.code() != want {
		b.Fatalf("%s %s = %d during the run, want %d", req.Method, req.URL.Path, w.code(), want)
	}
	b.ReportMetric(float64(w.n), "resp-bytes")
}

// BenchmarkChain_ProfileTrivialPage is the middleware chain on GET /profile
// with a valid session: security headers, no-store, cross-origin check,
// access log, routing, session load (open, inflate, decode, validate) and
// the auth span (no exporter), in front of a page that writes "ok". This
// is the figure the <= 25 allocations budget applies to.
func BenchmarkChain_ProfileTrivialPage(b *testing.B) {
	app, req := signedIn(b, testenv.AppOptions{}, "/profile")
	h := app.HandlerWithProfilePage(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	serve(b, h, req, http.StatusOK)
}

// BenchmarkChain_ProfilePage is the same request through the real profile
// page (claims decoded, template rendered).
func BenchmarkChain_ProfilePage(b *testing.B) {
	app, req := signedIn(b, testenv.AppOptions{}, "/profile")
	serve(b, app.Handler(), req, http.StatusOK)
}

// BenchmarkChain_Landing is GET / for a signed-in user.
func BenchmarkChain_Landing(b *testing.B) {
	app, req := signedIn(b, testenv.AppOptions{}, "/")
	serve(b, app.Handler(), req, http.StatusOK)
}

// BenchmarkChain_Healthz is the liveness probe, answered in front of the chain.
func BenchmarkChain_Healthz(b *testing.B) {
	_, app := testenv.Setup(b, testenv.IdPOptions{}, testenv.AppOptions{Options: server.Options{Logger: productionLogger()}})
	req := httptest.NewRequest(http.MethodGet, app.URL+"/healthz", nil)
	serve(b, app.Handler(), req, http.StatusOK)
}

// BenchmarkSignIn is POST /auth/signin/zitadel: flow cookie sealed,
// authorization URL built (the provider probe is cached).
func BenchmarkSignIn(b *testing.B) {
	_, app := testenv.Setup(b, testenv.IdPOptions{}, testenv.AppOptions{Options: server.Options{Logger: productionLogger()}})
	h := app.Handler()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		req := httptest.NewRequest(http.MethodPost, app.URL+"/auth/signin/zitadel", http.NoBody)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		browserHeaders(req)
		h.ServeHTTP(w, req)
		if w.status != http.StatusSeeOther {
			b.Fatalf("sign-in = %d", w.status)
		}
	}
}

// replayTransport sits between the app and the provider. While recording
// it passes requests through and keeps the token and userinfo answers;
// while replaying it answers those two from memory, so a benchmark of the
// callback measures the app's own work (state check, token parsing, ID
// token signature and claims verification with the cached key, userinfo
// parsing, session sealing) and none of the provider's or the network's.
type replayTransport struct {
	next   http.RoundTripper
	replay atomic.Bool
	mu     sync.Mutex
	saved  map[string]savedResponse
	served atomic.Int64
}

type savedResponse struct {
	status int
	header http.Header
	body   []byte
}

func replayed(path string) bool {
	return strings.HasSuffix(path, "/oauth/token") || strings.HasSuffix(path, "/userinfo")
}

func (t *replayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !replayed(req.URL.Path) {
		return t.next.RoundTrip(req)
	}
	if t.replay.Load() {
		t.mu.Lock()
		s, ok := t.saved[req.URL.Path]
		t.mu.Unlock()
		if ok {
			if req.Body != nil {
				_, _ = io.Copy(io.Discard, req.Body)
				req.Body.Close()
			}
			t.served.Add(1)
			return &http.Response{
				StatusCode: s.status, Status: http.StatusText(s.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: s.header.Clone(), Body: io.NopCloser(bytes.NewReader(s.body)),
				ContentLength: int64(len(s.body)), Request: req,
			}, nil
		}
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.saved[req.URL.Path] = savedResponse{status: resp.StatusCode, header: resp.Header.Clone(), body: body}
	t.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// BenchmarkCallback_OwnWork is GET /auth/callback without the provider:
// a real sign-in is recorded once (its flow cookie, callback URL, token
// and userinfo answers), then the same callback is replayed. Each
// iteration checks the state against the sealed flow cookie, parses the
// token response, verifies the ID token (RS256 signature with the cached
// key, issuer, audience, expiry, nonce), parses userinfo, and seals a new
// session cookie.
func BenchmarkCallback_OwnWork(b *testing.B) { replayCallback(b, testenv.AppOptions{}) }

// replayCallback benchmarks the callback of an app made with opts (its
// session store: the cookie by default).
func replayCallback(b *testing.B, opts testenv.AppOptions) {
	rt := &replayTransport{next: http.DefaultTransport, saved: map[string]savedResponse{}}
	opts.Options.Logger, opts.Options.HTTPClient = productionLogger(), &http.Client{Transport: rt}
	_, app := testenv.Setup(b, testenv.IdPOptions{}, opts)
	br := testenv.NewBrowser(b)
	back := br.LoginAtProvider(br.StartSignIn(app, ""), "alice", pw)
	cb, err := back.Location()
	if err != nil {
		b.Fatal(err)
	}
	appURL, _ := url.Parse(app.URL)
	var cookie []string
	for _, c := range br.Jar.Cookies(appURL) {
		cookie = append(cookie, c.Name+"="+c.Value)
	}
	if r := br.Follow(br.Get(cb.String())); r.StatusCode != http.StatusOK || !strings.HasSuffix(r.URL, "/profile") {
		b.Fatalf("recorded login landed on %s", r)
	}
	rt.replay.Store(true)

	req := httptest.NewRequest(http.MethodGet, cb.String(), nil)
	req.Header.Set("Cookie", strings.Join(cookie, "; "))
	browserHeaders(req)
	req.Header.Set("Sec-Fetch-Site", "cross-site") // arriving from the provider
	h := app.Handler()
	w := &discardWriter{h: http.Header{}}
	check := func() {
		if w.status != http.StatusSeeOther || w.h.Get("Location") != "/profile" || !strings.Contains(strings.Join(w.h.Values("Set-Cookie"), "\n"), "gatehouse=") {
			b.Fatalf("replayed callback = %d to %q, want 303 to /profile with a session cookie", w.status, w.h.Get("Location"))
		}
	}
	h.ServeHTTP(w, req)
	check()
	before := rt.served.Load()
	b.ReportAllocs()
	cpu := testenv.StartCPU(b)
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
	cpu.Report()
	check()
	if got := rt.served.Load() - before; got != 2*int64(b.N) {
		b.Fatalf("provider answers replayed = %d for %d callbacks, want 2 each (token, userinfo)", got, b.N)
	}
}

// deployedMetrics is the telemetry of a default deployment: metrics on
// (the SDK with Gatehouse's views, the decisions' durations kept by
// Gatehouse, as telemetry.Setup does for /metrics; read by nothing here),
// traces off.
func deployedMetrics(tb testing.TB) *telemetry.Telemetry {
	tb.Helper()
	decisions := telemetry.NewDecisionDurations()
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(decisions))
	tel, err := telemetry.New(telemetry.Providers{
		MeterProvider:     sdkmetric.NewMeterProvider(append(telemetry.MeterOptions(resource.Default(), false), sdkmetric.WithReader(reader))...),
		DecisionDurations: decisions,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tel
}

// BenchmarkChain_Verify is GET /auth/verify through the whole public
// handler as deployed (metrics on, JSON access log at info), asked by a
// trusted proxy about a valid session with roles=admin: what every
// request to a protected app costs Gatehouse besides net/http.
// BenchmarkDecision_Verify (internal/forwardauth) is the endpoint alone.
func BenchmarkChain_Verify(b *testing.B) {
	metrics := deployedMetrics(b)
	app, req := signedIn(b, testenv.AppOptions{
		Options: server.Options{Telemetry: metrics},
		Modify:  func(c *config.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} },
	}, "/auth/verify?roles=admin")
	req.RemoteAddr = "192.0.2.7:41000" // httptest's default peer, as a trusted proxy
	req.Header.Set("X-Original-URL", "https://grafana.example.com/d/abc?orgId=1")
	req.Header.Set("X-Original-Method", "GET")
	serve(b, app.Handler(), req, http.StatusOK)
}

// BenchmarkChain_VerifyBearer is BenchmarkChain_Verify for an API client:
// an opaque access token whose introspection answer is cached (the
// provider's, for an application of Gatehouse's project), no cookie.
func BenchmarkChain_VerifyBearer(b *testing.B) {
	const secret = "bench-gatehouse-secret"
	metrics := deployedMetrics(b)
	cli := devidp.Client{ID: "api-cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	idp, app := testenv.Setup(b, testenv.IdPOptions{Secret: secret, Clients: []devidp.Client{cli}}, testenv.AppOptions{
		Options: server.Options{Telemetry: metrics, Logger: productionLogger()},
		Modify: func(c *config.Config) {
			c.ClientSecret = secret
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		},
	})
	req := httptest.NewRequest(http.MethodGet, app.URL+"/auth/verify?roles=admin", nil)
	req.RemoteAddr = "192.0.2.7:41000"
	req.Header.Set("User-Agent", "gatehouse-bench-api/1.0")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+idp.Tokens(b, cli, "alice", pw).AccessToken)
	req.Header.Set("X-Original-URL", "https://grafana.example.com/d/abc?orgId=1")
	req.Header.Set("X-Original-Method", "GET")
	serve(b, app.Handler(), req, http.StatusOK)
}
