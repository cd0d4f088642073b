// Package server wires Gatehouse together: configuration in, an HTTP
// handler and a listener lifecycle (probes, graceful drain) out.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/assertion"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/bearer"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/forwardauth"
	"github.com/gatehouse/gatehouse/internal/ratelimit"
	"github.com/gatehouse/gatehouse/internal/redirect"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/web"
)

// Options are the parts the caller may supply; zero values get defaults.
type Options struct {
	Logger     *slog.Logger
	Tracer     trace.Tracer     // default: no-op
	HTTPClient *http.Client     // for calls to the provider; default: with timeouts
	Sessions   session.Store    // default: built from cfg.SessionStore
	Now        func() time.Time // default: time.Now
	Observer   auth.Observer    // default: the telemetry's auth metrics
	// Telemetry supplies tracer, meter, propagation and the /metrics
	// handler; default: off. Tracer, Observer and HTTPClient win over it.
	Telemetry *telemetry.Telemetry
	// RefreshSkew overrides how early tokens are refreshed (tests use 1ns
	// with short-lived tokens to see real expiry quickly).
	RefreshSkew time.Duration
	// RefreshBudget overrides how long a request waits for its session's
	// refresh (default 5s).
	RefreshBudget time.Duration
}

// App is the assembled service.
type App struct {
	cfg       config.Config
	log       *slog.Logger
	provider  *auth.Provider
	sessions  session.Store
	ownStore  bool // built here from the configuration: closed by Run
	rp        *auth.RelyingParty
	pages     *web.Pages
	handler   http.Handler
	tel       *telemetry.Telemetry
	signer    *assertion.Signer      // X-Gatehouse-Assertion, /auth/jwks.json
	forward   *forwardauth.Endpoints // the decision endpoints
	draining  atomic.Bool
	storeSeen atomic.Bool // the session store has answered a readiness check once
	// limitSignIn and limitCallback put the rate limits on those routes.
	limitSignIn, limitCallback func(http.Handler) http.Handler
}

// New assembles the service from cfg. It does not contact the provider:
// Run (or Provider().Run) does, in the background.
func New(cfg config.Config, opts Options) (*App, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tel := opts.Telemetry
	if tel == nil {
		tel = telemetry.Disabled()
	}
	tracer := opts.Tracer
	if tracer == nil {
		tracer = tel.Tracer("github.com/gatehouse/gatehouse/internal/auth")
	}
	observer := opts.Observer
	if observer == nil {
		observer = tel.AuthMetrics()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	client := opts.HTTPClient
	if client == nil {
		client = NewProviderClient(tel.Transport, cfg.ProviderTimeout)
	}
	sessions := opts.Sessions
	if sessions == nil {
		var err error
		sessions, err = NewSessionStore(cfg, now, log)
		if err != nil {
			return nil, err
		}
	}
	if rs, ok := sessions.(*session.RedisStore); ok && opts.Sessions == nil && tel.Instrumented() {
		if err := rs.Instrument(tel.TracerProvider(), tel.MeterProvider()); err != nil {
			return nil, fmt.Errorf("redis telemetry: %w", err)
		}
	}
	flowSealer, err := seal.New(cfg.SessionSecret, cfg.SessionSecretPrevious, "flow")
	if err != nil {
		return nil, err
	}
	pages := web.NewPages(log)
	redirects, err := redirect.New(cfg.CallbackURL, cfg.AllowedRedirectHosts, cfg.PostLoginURL)
	if err != nil {
		return nil, err
	}
	signer, err := assertion.New(assertion.Options{Secret: cfg.SessionSecret, Previous: cfg.SessionSecretPrevious, Issuer: cfg.PublicOrigin()})
	if err != nil {
		return nil, err
	}
	provider := auth.NewProvider(auth.ProviderConfig{
		Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Key: cfg.ClientKey,
		CallbackURL: cfg.CallbackURL, Scopes: cfg.Scopes,
	}, client, log)
	tokens, err := newBearerVerifier(cfg, provider, now)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, provider: provider, sessions: sessions, pages: pages, ownStore: opts.Sessions == nil, tel: tel, signer: signer}
	a.limitSignIn, a.limitCallback = a.limits()
	a.rp = auth.New(auth.Deps{
		Config: auth.Config{
			ClientID: cfg.ClientID, PostLoginURL: cfg.PostLoginURL, PostLogoutURL: cfg.PostLogoutURL,
			SecureCookies: cfg.SecureCookies(), SessionDuration: cfg.SessionDuration, IdleTimeout: cfg.SessionIdleTimeout,
			RefreshSkew: opts.RefreshSkew, RefreshBudget: opts.RefreshBudget, SkipSignInPage: cfg.SigninPage == "skip",
			ProjectID: cfg.ProjectID, RolesMaxAge: cfg.RolesMaxAge, ProviderTimeout: cfg.ProviderTimeout,
		},
		Provider: provider, Sessions: sessions, Sealer: flowSealer, Pages: pages, Redirects: redirects, Bearer: tokens,
		Logger: log, Tracer: tracer, Observer: signInOutcomes{observer}, Now: now,
	})
	a.forward = forwardauth.New(forwardauth.Deps{
		Config: forwardauth.Config{
			TrustedProxies: cfg.TrustedProxies, PublicOrigin: cfg.PublicOrigin(), Redirects: redirects,
			ForwardAccessToken: cfg.ForwardAccessToken,
		},
		Decider: a.rp, Signer: signer, Pages: pages, Logger: log, Tracer: tracer, Metrics: tel.ForwardMetrics(), Now: now,
		SecurityHeaders: securityHeaderSet(cfg.Issuer, cfg.CallbackURL),
	})
	if len(cfg.AllowedRedirectHosts) > 0 && len(cfg.TrustedProxies) == 0 {
		log.Warn("ALLOWED_REDIRECT_HOSTS is set but TRUSTED_PROXIES is empty: forward-auth ignores every proxy's report of the original URL, " +
			"so sign-ins from protected apps cannot return to them and no assertion is signed; list your proxies' addresses")
	}
	a.handler = a.front(a.probeRoutes(), a.middleware(a.routes(), a.decisionRoute))
	return a, nil
}

// newBearerVerifier judges API clients' bearer tokens at the decision
// endpoints (internal/bearer, docs/API-CLIENTS.md): tokens for Gatehouse's
// client or, with ZITADEL_PROJECT_ID, any application of its project;
// opaque ones only when Gatehouse has credentials to introspect with.
func newBearerVerifier(cfg config.Config, provider *auth.Provider, now func() time.Time) (*bearer.Verifier, error) {
	audiences := []string{cfg.ClientID}
	if cfg.ProjectID != "" {
		audiences = append(audiences, cfg.ProjectID)
	}
	var gate bearer.Gate
	if cfg.RateLimit > 0 {
		gate = introspectionGate(ratelimit.New(ratelimit.Options{PerMinute: cfg.RateLimit, Burst: cfg.RateLimitBurst, TrustedProxies: cfg.TrustedProxies}), cfg.TrustedProxies)
	}
	v, err := bearer.New(bearer.Config{
		Issuer: cfg.Issuer, Audiences: audiences, ProjectID: cfg.ProjectID,
		Introspect: cfg.ClientSecret != "" || cfg.ClientKey != nil, CacheTTL: cfg.IntrospectionCacheTTL, Now: now,
		Gate: gate,
	}, provider)
	if err != nil {
		return nil, fmt.Errorf("bearer tokens: %w", err)
	}
	return v, nil
}

// introspectionGate charges each introspection call to the client that
// asked for it, in buckets of its own with the sign-in limit's rate and
// burst (RATE_LIMIT_PER_MINUTE, RATE_LIMIT_BURST): a call whose token the
// provider called active, or that the provider could not answer, gives
// its token back, and requests that join a call in flight are not
// charged (bearer.Gate). So only made-up, revoked or foreign tokens count:
// a client inventing tokens cannot turn each one into a call to ZITADEL,
// and one whose tokens work is never refused (docs/API-CLIENTS.md). The
// client is read from the request in its handler's goroutine: the charge
// runs in the shared call, which may outlive the request.
func introspectionGate(l *ratelimit.Limiter, trusted []netip.Prefix) bearer.Gate {
	return func(r *http.Request) bearer.Charge {
		c := ratelimit.ClientOf(r, trusted)
		return func() (func(bool), time.Duration, bool) {
			if ok, wait := l.Take(c); !ok {
				return nil, wait, false
			}
			return func(refused bool) {
				if !refused {
					l.Give(c)
				}
			}, 0, true
		}
	}
}

// middleware is the chain around the router. From the outside in: the
// span, metrics and access line of the request (observe); the panic guard;
// the warning about X-Forwarded-For from peers not in TRUSTED_PROXIES
// (decision requests included: an unlisted proxy in front of forward-auth
// is the same mistake); the decision endpoints (decisions: a proxy asking
// about another app's request, which no cross-origin check applies to;
// they set the security headers on every answer a browser may see); the
// security headers, so that every answer below carries them; the
// cross-origin check, before anything routes a refused request.
// TestMiddleware_Order fails when the order changes.
func (a *App) middleware(router http.Handler, decisions func(*http.Request) (http.Handler, string)) http.Handler {
	cop := http.NewCrossOriginProtection()
	// The provider calls this server to server, with no browser headers to check.
	cop.AddInsecureBypassPattern("POST /auth/backchannel-logout")
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.log.WarnContext(r.Context(), "cross-origin request refused", "method", r.Method)
		a.pages.Message(w, r, http.StatusForbidden, "cross_origin")
	}))
	h := cop.Handler(router)
	h = securityHeadersFor(a.cfg.Issuer, a.cfg.CallbackURL)(h)
	if decisions != nil {
		h = decisionsFirst(decisions, h)
	}
	named := func(*http.Request) string { return "" }
	if decisions != nil {
		named = func(r *http.Request) string { _, name := decisions(r); return name }
	}
	h = newForwardedWarning(a.log, a.cfg.TrustedProxies, time.Now, time.Hour).middleware(h)
	h = recoverer(a.log, named)(h)
	return observe(a.log, a.tel, publicHostPort(a.cfg.CallbackURL), named, h)
}

// front answers the probes before the chain: kubelet's requests are the
// most frequent of all, and tracing, logging or routing them would cost
// most of their time (BenchmarkChain_Healthz). They keep nosniff, HSTS,
// no-store and the panic guard (probeHeaders says why not the others).
func (a *App) front(probes map[string]http.Handler, chain http.Handler) http.Handler {
	wrapped := make(map[string]http.Handler, len(probes))
	for path, h := range probes {
		wrapped[path] = probeHeaders(a.cfg.Issuer, a.cfg.SecureCookies())(recoverer(a.log, func(*http.Request) string { return path })(getOrHead(h)))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := wrapped[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		chain.ServeHTTP(w, r)
	})
}

// decisionsFirst hands the decision endpoints' requests to their handler
// (observe names them by the same route function) and everything else to
// next.
func decisionsFirst(route func(*http.Request) (http.Handler, string), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, _ := route(r); h != nil {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// getOrHead answers other methods with 405.
func getOrHead(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Handler is the public listener's handler.
func (a *App) Handler() http.Handler { return a.handler }

// Provider is the identity provider connection (tests drive it directly).
func (a *App) Provider() *auth.Provider { return a.provider }

// limits are the per-client rate limits (RATE_LIMIT_PER_MINUTE,
// RATE_LIMIT_BURST) on sign-in and callback, each with its own buckets
// (signIn also wraps the SIGNIN_PAGE=skip start on GET /auth/signin: the
// same buckets as the form's POST, since it starts the same sign-in). A
// sign-in attempt holds its token until it succeeds (internal/ratelimit):
// a callback that signs the user in gives back its own token and the one
// its sign-in start took (signInOutcomes tells it), so only failed and
// abandoned sign-ins count, and a crowd behind one address is not refused
// for signing in. Refused requests get a friendly 429 page with Retry-After.
func (a *App) limits() (signIn, callback func(http.Handler) http.Handler) {
	if a.cfg.RateLimit <= 0 {
		none := func(h http.Handler) http.Handler { return h }
		return none, none
	}
	opts := ratelimit.Options{PerMinute: a.cfg.RateLimit, Burst: a.cfg.RateLimitBurst, TrustedProxies: a.cfg.TrustedProxies}
	starts, callbacks := ratelimit.New(opts), ratelimit.New(opts)
	deny := func(w http.ResponseWriter, r *http.Request, c ratelimit.Client) {
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("auth.failure.reason", reasonRateLimited))
		a.log.WarnContext(r.Context(), "rate limit exceeded", "route", RouteTemplate(r), "client.address", c.String())
		a.pages.Message(w, r, http.StatusTooManyRequests, reasonRateLimited)
	}
	return starts.Middleware(deny, nil), callbacks.Middleware(deny, starts.Give)
}

// signInOutcomes passes every auth step's outcome on (the metrics) and
// tells the rate limit around the callback when a sign-in succeeded.
type signInOutcomes struct{ next auth.Observer }

func (o signInOutcomes) Step(ctx context.Context, step, outcome, reason string, d time.Duration) {
	if step == auth.StepCallback && outcome == "success" {
		ratelimit.Succeeded(ctx)
	}
	if o.next != nil {
		o.next.Step(ctx, step, outcome, reason, d)
	}
}

// reasonRateLimited is the failure code (page, span, log) of a refused request.
const reasonRateLimited = "rate_limited"

// NewSessionStore builds the store SESSION_STORE names.
func NewSessionStore(cfg config.Config, now func() time.Time, log *slog.Logger) (session.Store, error) {
	sealer, err := seal.New(cfg.SessionSecret, cfg.SessionSecretPrevious, "session")
	if err != nil {
		return nil, err
	}
	opts := session.CookieOptions{Secure: cfg.SecureCookies(), Domain: cfg.CookieDomain}
	switch cfg.SessionStore {
	case "memory":
		log.Warn("SESSION_STORE=memory: sessions live in this process only; they end on restart and are not shared between replicas")
		return session.NewMemoryStore(sealer, opts, now, 100_000), nil
	case "cookie", "":
		return session.NewCookieStore(sealer, opts, now), nil
	case "redis":
		client, err := session.NewRedisUniversalClient(RedisOptions(cfg))
		if err != nil {
			return nil, err
		}
		return session.NewRedisStore(client, sealer, opts, now, cfg.RedisKeyPrefix,
			session.WithReplicaAck(cfg.Redis.MinReplicasAck, cfg.Redis.ReplicaAckTimeout)), nil
	}
	return nil, fmt.Errorf("SESSION_STORE=%s is not supported by this build", cfg.SessionStore)
}

// RedisOptions are the Redis client settings of cfg.
func RedisOptions(cfg config.Config) session.RedisOptions {
	r := cfg.Redis
	return session.RedisOptions{
		Mode: r.Mode, URL: cfg.RedisURL, Username: r.Username, Password: cfg.RedisPassword,
		SentinelMaster: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs,
		SentinelUsername: r.SentinelUsername, SentinelPassword: r.SentinelPassword,
		ClusterAddrs: r.ClusterAddrs, TLS: r.TLS,
	}
}

// NewProviderClient is the HTTP client for calls to the identity provider:
// bounded connect, TLS and overall time, so a slow provider cannot hold
// requests forever, and at most maxProviderConns connections, so a
// stalled provider cannot make Gatehouse open one per waiting request:
// further calls wait for one within their budget. The users' requests
// have a budget of their own, userBudget (PROVIDER_TIMEOUT); the client's
// bounds are never shorter, or a PROVIDER_TIMEOUT above them would be
// cut off by the client instead. wrap wraps the transport (tracing); nil
// for none.
func NewProviderClient(wrap func(http.RoundTripper) http.RoundTripper, userBudget time.Duration) *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: max(10*time.Second, userBudget),
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		MaxConnsPerHost:       maxProviderConns,
		ForceAttemptHTTP2:     true,
	}
	var rt http.RoundTripper = t
	if wrap != nil {
		rt = wrap(rt)
	}
	return &http.Client{Transport: rt, Timeout: max(15*time.Second, userBudget+5*time.Second)}
}

// maxProviderConns bounds the connections to the provider: far more than
// the calls in flight at hundreds of sign-ins a second (each takes a
// fraction of a second), few enough that a provider answering in 10 s
// while callbacks pour in costs bounded sockets and goroutines
// (TestSlowProvider_CallbacksTimeOutFriendlyAndRecover).
const maxProviderConns = 64

// Run serves on the configured port until ctx ends, then drains: readiness
// turns 503 at once, the listener keeps serving for ShutdownDelay (so
// endpoints can take the pod out of rotation), then in-flight requests get
// ShutdownTimeout to finish.
func (a *App) Run(ctx context.Context, ln net.Listener) error {
	srv := a.HTTPServer()
	providerCtx, stopProvider := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProvider()
	go a.provider.Run(providerCtx)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.draining.Store(true)
	a.log.Info("shutting down: readiness is 503, draining", "delay", a.cfg.ShutdownDelay.String(), "timeout", a.cfg.ShutdownTimeout.String())
	time.Sleep(a.cfg.ShutdownDelay)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if c, ok := a.sessions.(interface{ Close() error }); ok && a.ownStore {
		_ = c.Close()
	}
	a.log.Info("stopped cleanly")
	return nil
}

// HTTPServer is the public server with its timeouts. MaxHeaderBytes stays
// well under the 64 KiB a hostile client may send (answered with 431).
func (a *App) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// Addr is the public listen address for cfg.
func Addr(cfg config.Config, loopbackOnly bool) string {
	host := ""
	if loopbackOnly {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(cfg.Port))
}
