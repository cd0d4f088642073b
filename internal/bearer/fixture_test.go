package bearer_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/clientauth"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The *auth.Provider the app builds is the verifier's upstream.
var _ bearer.Upstream = (*auth.Provider)(nil)

// spans records every span of the test process, the OpenID library's
// included (it traces on the global provider): the secrecy test scans them.
var spans = tracetest.NewSpanRecorder()

// tracing switches span recording: on for the tests, off for the
// benchmarks (they measure the default, tracing off).
var tracing atomic.Bool

type switchSampler struct{}

func (switchSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if tracing.Load() {
		return sdktrace.AlwaysSample().ShouldSample(p)
	}
	return sdktrace.NeverSample().ShouldSample(p)
}
func (switchSampler) Description() string { return "switch" }

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler)) // the example provider logs every request there
	tracing.Store(true)
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithSampler(switchSampler{})))
	os.Exit(m.Run())
}

const (
	secret    = "gatehouse-test-secret"
	appOrigin = "http://127.0.0.1:1" // never dialled: only registered as redirect URI
)

// The applications registered next to Gatehouse's own client.
var (
	// cli is an API client in Gatehouse's project with opaque tokens.
	cli = devidp.Client{ID: "api-cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	// jwtApp is an API client in Gatehouse's project with JWT access
	// tokens: their aud is its own client ID only (see the report: the
	// op package cannot add the project ID as ZITADEL does).
	jwtApp = devidp.Client{ID: "api-jwt", Secret: "jwt-secret", RedirectURIs: []string{"http://127.0.0.1:1/jwt"}, JWTAccessTokens: true}
	// stranger is an application of another project, opaque tokens.
	stranger = devidp.Client{ID: "other-app", Secret: "other-secret", RedirectURIs: []string{"http://127.0.0.1:1/other"}, Project: "900000000000000009"}
	// self is Gatehouse's own client, logging in by itself (a single-page
	// app of the same ZITADEL application): JWT access tokens, aud = it.
	self = devidp.Client{ID: testenv.ClientID, Secret: secret, RedirectURIs: []string{appOrigin + "/auth/callback"}}
)

// clock is the verifier's clock: real time plus an offset tests move.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type fixture struct {
	idp      *testenv.IdP
	provider *auth.Provider
	v        *bearer.Verifier
	clock    *clock
	logs     *testenv.SyncBuffer
}

type fixtureOptions struct {
	key       *devidp.AppKey // Gatehouse authenticates with this key instead of the secret
	projectID string
	noOpaque  bool
	cacheTTL  time.Duration // default 60 s
	noCache   bool          // INTROSPECTION_CACHE_TTL=0s
}

// setup starts the provider with Gatehouse's client (JWT access tokens)
// and the API clients, connects Gatehouse's provider connection to it and
// builds a verifier on that connection.
func setup(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	idpOpts := testenv.IdPOptions{Secret: secret, AppURLs: []string{appOrigin}, JWTAccessTokens: true,
		Clients: []devidp.Client{cli, jwtApp, stranger}}
	pcfg := auth.ProviderConfig{ClientID: testenv.ClientID, ClientSecret: secret,
		CallbackURL: appOrigin + "/auth/callback", Scopes: []string{"openid"}}
	if o.key != nil {
		idpOpts.Secret, idpOpts.Key = "", o.key
		pcfg.ClientSecret = ""
		key := parseKey(t, o.key.JSON)
		pcfg.Key = key
	}
	idp := testenv.StartIdP(t, idpOpts)
	pcfg.Issuer = idp.URL
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	provider := auth.NewProvider(pcfg, &http.Client{Timeout: 5 * time.Second}, logger)
	if err := provider.Connect(context.Background()); err != nil {
		t.Fatalf("connect: %v", err)
	}
	ttl := o.cacheTTL
	if ttl == 0 && !o.noCache {
		ttl = time.Minute
	}
	clk := &clock{}
	audiences := []string{testenv.ClientID}
	if o.projectID != "" {
		audiences = append(audiences, o.projectID)
	}
	v, err := bearer.New(bearer.Config{
		Issuer: idp.URL, Audiences: audiences, ProjectID: o.projectID,
		Introspect: !o.noOpaque, CacheTTL: ttl, Now: clk.Now,
	}, provider)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{idp: idp, provider: provider, v: v, clock: clk, logs: logs}
}

// token signs alice in as app c and returns her access token.
func (f *fixture) token(t testing.TB, c devidp.Client) *oauth2.Token {
	t.Helper()
	return f.idp.Tokens(t, c, "alice", devidp.DemoPassword)
}

// verify judges token as the decision endpoint will, and logs the result
// the way a caller does (the secrecy test reads these lines).
func (f *fixture) verify(t testing.TB, token string) bearer.Result {
	t.Helper()
	res := f.v.Verify(context.Background(), "Bearer "+token)
	slog.New(slog.NewJSONHandler(f.logs, nil)).Info("auth.verify", "bearer", res)
	return res
}

func alice() devidp.User { return devidp.DemoUsers()[0] }

func wantOutcome(t testing.TB, res bearer.Result, outcome bearer.Outcome, reason bearer.Reason) {
	t.Helper()
	if res.Outcome != outcome || res.Reason != reason {
		t.Fatalf("outcome %v reason %q (err %v), want %v %q", res.Outcome, res.Reason, res.Err, outcome, reason)
	}
}

func parseKey(t testing.TB, data []byte) *clientauth.Key {
	t.Helper()
	k, err := clientauth.ParseKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
