// Package auth is the OpenID Connect relying party: sign-in with
// Authorization Code + PKCE (signin.go), the callback (callback.go), the
// session check every protected request pays (decide.go) with
// single-flight token refresh (refresh.go), userinfo (userinfo.go), logout
// (logout.go) and back-channel logout (backchannel.go). Each auth step runs
// through one helper (step.go) that opens its span and records its outcome.
package auth

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
)

// Pages renders what the user sees; the web package implements it.
type Pages interface {
	// Message shows the friendly page for a code: a failure (Reason*), a
	// notice such as "signed out", or a 404.
	Message(w http.ResponseWriter, r *http.Request, status int, code string)
	// EndSession shows a page that posts fields to the provider's
	// end_session endpoint (so the ID token never travels in a URL).
	EndSession(w http.ResponseWriter, r *http.Request, action string, fields []Field)
}

// Field is one hidden form field.
type Field struct{ Name, Value string }

// Config is the relying party's share of the configuration.
type Config struct {
	ClientID        string
	PostLoginURL    string
	PostLogoutURL   string
	SecureCookies   bool
	SessionDuration time.Duration
	IdleTimeout     time.Duration
	// RefreshSkew refreshes this long before the access token expires
	// (default 30s), so no request reaches the provider with a token that
	// dies in flight.
	RefreshSkew time.Duration
	// ProviderTimeout is the longest a user's request waits for the
	// provider (default 5s): the callback's calls together, and userinfo.
	ProviderTimeout time.Duration
}

// Observer hears about each auth step's outcome (metrics).
type Observer interface {
	Step(ctx context.Context, step, outcome, reason string, d time.Duration)
}

// Deps are the relying party's collaborators.
type Deps struct {
	Config   Config
	Provider *Provider
	Sessions session.Store
	Sealer   *seal.Sealer // for the sign-in and logout cookies (purpose "flow")
	Pages    Pages
	Logger   *slog.Logger
	Tracer   trace.Tracer     // optional; no spans
	Observer Observer         // optional; no metrics
	Now      func() time.Time // optional; time.Now
}

// RelyingParty serves the authentication routes and checks sessions.
type RelyingParty struct {
	cfg      Config
	provider *Provider
	sessions session.Store
	pages    Pages
	log      *slog.Logger
	tracer   trace.Tracer
	tracing  bool // tracer records: with a no-op tracer, steps open no span at all
	observer Observer
	now      func() time.Time
	signIns  signInCookies
	logout   logoutCookie
	refresh  refreshCoordinator
	revoker  session.Revoker    // nil: back-channel logout is not possible
	replay   session.OnceMarker // set whenever revoker is
}

// New builds the relying party. Token refresh is coordinated across
// replicas through the store when it is session.Shared (Redis), else within
// this process.
func New(d Deps) *RelyingParty {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	if d.Config.RefreshSkew == 0 {
		d.Config.RefreshSkew = 30 * time.Second
	}
	if d.Config.ProviderTimeout == 0 {
		d.Config.ProviderTimeout = 5 * time.Second
	}
	var refresh refreshCoordinator = newRefresher(now)
	if shared, ok := d.Sessions.(session.Shared); ok {
		refresh = newSharedRefresh(shared, now)
	}
	// Back-channel logout needs both: stores that can end sessions by
	// subject also remember logout tokens for every replica.
	revoker, _ := d.Sessions.(session.Revoker)
	replay, _ := d.Sessions.(session.OnceMarker)
	if replay == nil {
		revoker = nil
	}
	tracer := d.Tracer
	_, noopTracer := tracer.(tracenoop.Tracer)
	if tracer == nil {
		tracer, noopTracer = tracenoop.NewTracerProvider().Tracer(""), true
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cookies := flowCookies{sealer: d.Sealer, secure: d.Config.SecureCookies, ttl: 10 * time.Minute, now: now}
	return &RelyingParty{
		cfg: d.Config, provider: d.Provider, sessions: d.Sessions, pages: d.Pages,
		log: log, tracer: tracer, tracing: !noopTracer, observer: d.Observer, now: now,
		signIns: signInCookies{cookies}, logout: logoutCookie{cookies},
		refresh: refresh, revoker: revoker, replay: replay,
	}
}

type nonceKey struct{}

func nonceFromContext(ctx context.Context) string {
	n, _ := ctx.Value(nonceKey{}).(string) // "" on refresh: refreshed ID tokens carry no nonce
	return n
}
