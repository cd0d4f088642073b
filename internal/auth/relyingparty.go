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

	"golang.org/x/sync/singleflight"

	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/redirect"
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
	// SkipSignInPage (SIGNIN_PAGE=skip): a browser sent to sign in by a
	// protected app goes straight on to the provider (SignInEntry).
	SkipSignInPage bool
	// RefreshBudget is how long a request waits for its session's refresh
	// (another replica's lock included) or roles re-read before it is
	// answered without (default 5s); the refresh itself goes on.
	RefreshBudget time.Duration
	// ProjectID is ZITADEL_PROJECT_ID: whose roles count
	// (claims.RolesClaim), for sessions and bearer tokens alike.
	ProjectID string
	// RolesMaxAge bounds how old the roles a decision uses may be
	// (ROLES_MAX_AGE; default 5m).
	RolesMaxAge time.Duration
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
	// Redirects decides where a sign-in may return (ALLOWED_REDIRECT_HOSTS);
	// nil: Gatehouse's own pages only.
	Redirects *redirect.Policy
	// Bearer judges Authorization: Bearer tokens at the decision
	// endpoints (internal/bearer); nil: cookies decide every request.
	Bearer   BearerVerifier
	Pages    Pages
	Logger   *slog.Logger
	Tracer   trace.Tracer     // optional; no spans
	Observer Observer         // optional; no metrics
	Now      func() time.Time // optional; time.Now
}

// RelyingParty serves the authentication routes and checks sessions.
type RelyingParty struct {
	cfg        Config
	redirects  *redirect.Policy
	provider   *Provider
	sessions   session.Store
	pages      Pages
	log        *slog.Logger
	tracer     trace.Tracer
	tracing    bool // tracer records: with a no-op tracer, steps open no span at all
	observer   Observer
	now        func() time.Time
	signIns    signInCookies
	logout     logoutCookie
	refresh    refreshCoordinator
	identities *identityCache
	bearer     BearerVerifier     // nil: no bearer tokens
	revoker    session.Revoker    // nil: back-channel logout is not possible
	replay     session.OnceMarker // set whenever revoker is
	// serverSide: sessions live in the store, not in the cookie, so a
	// refused refresh cannot be another replica's rotation race.
	serverSide  bool
	rolesFlight singleflight.Group
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
	if d.Config.RefreshBudget == 0 {
		d.Config.RefreshBudget = 5 * time.Second
	}
	if d.Config.RolesMaxAge == 0 {
		d.Config.RolesMaxAge = 5 * time.Minute
	}
	var refresh refreshCoordinator = newRefresher(now, d.Config.RefreshBudget, d.Config.SessionDuration)
	if shared, ok := d.Sessions.(session.Shared); ok {
		refresh = newSharedRefresh(shared, now, d.Config.RefreshBudget)
	}
	// Back-channel logout needs both: stores that can end sessions by
	// subject also remember logout tokens for every replica.
	revoker, serverSide := d.Sessions.(session.Revoker)
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
		cfg: d.Config, redirects: d.Redirects, provider: d.Provider, sessions: d.Sessions, pages: d.Pages,
		log: log, tracer: tracer, tracing: !noopTracer, observer: d.Observer, now: now,
		signIns: signInCookies{cookies}, logout: logoutCookie{cookies},
		refresh: refresh, revoker: revoker, replay: replay, serverSide: serverSide,
		identities: newIdentityCache(maxIdentities, d.Config.ProjectID), bearer: d.Bearer,
	}
}

// maxIdentities bounds the identity cache: about 1 KB each (identity,
// userinfo), so ~4 MB at most; beyond that many active sessions per
// replica, claims are read again more often, never wrongly.
const maxIdentities = 4096

type nonceKey struct{}

func nonceFromContext(ctx context.Context) string {
	n, _ := ctx.Value(nonceKey{}).(string) // the sign-in's; refreshes check theirs themselves (verifyRefreshedIDToken)
	return n
}
