package forwardauth_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/assertion"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/forwardauth"
	"github.com/gatehouse/gatehouse/internal/redirect"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/internal/web"
)

// BenchmarkDecision_Verify is one allowed forward-auth decision as nginx
// asks for it, everything the endpoint does: read the original request
// from a trusted proxy's headers, read and check the route's rules
// (roles=admin), the session check (cookie found among a browser's
// cookies, loaded, absolute and idle limits, the step's metric), the
// identity, the reused assertion for the original host, every identity
// header, the decision counter. No refresh or idle stamp is due, so
// nothing is written but the answer. The budget is 10 allocations.
func BenchmarkDecision_Verify(b *testing.B) {
	h, r := benchEndpoint(b, "/auth/verify?roles=admin", "X-Original-URL", "https://grafana.example.com/d/abc?orgId=1", "X-Original-Method", "GET")
	w := testenv.NewHeaderWriter()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeHTTP(w, r)
		if w.Code() != http.StatusOK || w.H.Get(forward.HeaderAssertion) == "" || w.H.Get("Set-Cookie") != "" {
			b.Fatalf("decision answered %d %v", w.Code(), w.H)
		}
	}
}

// benchEndpoint is the endpoints with a cookie-store session from a
// sign-in at the development provider (alice: admin, viewer), and a
// request from a trusted proxy carrying a browser's cookies and headers.
func benchEndpoint(b *testing.B, target string, headers ...string) (http.Handler, *http.Request) {
	b.Helper()
	return benchEndpointWith(b, nil, target, headers...)
}

// benchEndpointWith is benchEndpoint with tokens judged by verifier.
func benchEndpointWith(b *testing.B, verifier auth.BearerVerifier, target string, headers ...string) (http.Handler, *http.Request) {
	b.Helper()
	sealer, err := seal.New("bench-session-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	st := session.NewCookieStore(sealer, session.CookieOptions{Secure: true}, clock)
	c := testenv.RecordedSession(b, st, now)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	steps, err := telemetry.NewAuthMetrics(mp, "bench")
	if err != nil {
		b.Fatal(err)
	}
	decisions, err := telemetry.NewForwardMetrics(mp, "bench")
	if err != nil {
		b.Fatal(err)
	}
	pages := web.NewPages(nil)
	rp := auth.New(auth.Deps{Sessions: st, Pages: pages, Tracer: noop.NewTracerProvider().Tracer(""), Observer: steps, Now: clock, Bearer: verifier,
		Config: auth.Config{SessionDuration: time.Hour, IdleTimeout: 30 * time.Minute}})
	signer, err := assertion.New(assertion.Options{Secret: "bench-session-secret-0123456789-abcdefghij", Issuer: "https://login.example.com", Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	hosts, err := redirect.ParseHosts(".example.com")
	if err != nil {
		b.Fatal(err)
	}
	policy, err := redirect.New("https://login.example.com/auth/callback", hosts, "/profile")
	if err != nil {
		b.Fatal(err)
	}
	e := forwardauth.New(forwardauth.Deps{
		Config: forwardauth.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			PublicOrigin: "https://login.example.com", Redirects: policy},
		Decider: rp, Signer: signer, Pages: pages, Tracer: noop.NewTracerProvider().Tracer(""), Metrics: decisions, Now: clock,
	})
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = "10.1.2.3:40000"
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	r.Header.Set("Cookie", "_ga=GA1.1.123456789.1700000000; theme=dark; "+c.Name+"="+c.Value+"; lang=en")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	return e, r
}
