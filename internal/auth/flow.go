// Package auth is the OpenID Connect relying party: sign-in with
// Authorization Code + PKCE, the callback, sessions for protected routes
// (with single-flight token refresh), userinfo and logout.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
)

// Pages renders what the user sees; the web package implements it.
type Pages interface {
	// Error shows a friendly page for a failure code (see the Reason* constants).
	Error(w http.ResponseWriter, r *http.Request, status int, code string)
	// EndSession shows a page that posts fields to the provider's
	// end_session endpoint (so the ID token never travels in a URL).
	EndSession(w http.ResponseWriter, r *http.Request, action string, fields []Field)
}

// Field is one hidden form field.
type Field struct{ Name, Value string }

// Failure reasons: short, stable codes for pages, spans, metrics and logs.
const (
	ReasonStateMismatch       = "state_mismatch"
	ReasonIssuerMismatch      = "issuer_mismatch"
	ReasonCodeMissing         = "code_missing"
	ReasonAccessDenied        = "access_denied"
	ReasonProviderError       = "provider_error"
	ReasonCodeExchangeFailed  = "code_exchange_failed"
	ReasonIDTokenInvalid      = "id_token_invalid"
	ReasonUserinfoFailed      = "userinfo_failed"
	ReasonUserinfoSubMismatch = "userinfo_sub_mismatch"
	ReasonProviderUnavailable = "provider_unavailable"
	ReasonSessionExpired      = "session_expired"
	ReasonSessionTooLarge     = "session_too_large"
	ReasonSessionStore        = "session_store_unavailable"
	ReasonRefreshFailed       = "refresh_failed"
	ReasonNoSession           = "no_session"
	ReasonLogoutState         = "logout_state_mismatch"
	ReasonForbidden           = "forbidden"
)

// Config is the flow's share of the configuration.
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
}

// Observer hears about each auth step's outcome (metrics).
type Observer interface {
	Step(ctx context.Context, step, outcome, reason string, d time.Duration)
}

// Deps are the flow's collaborators.
type Deps struct {
	Config   Config
	Provider *Provider
	Sessions session.Store
	Sealer   *seal.Sealer // for the flow and logout cookies (purpose "flow")
	Pages    Pages
	Logger   *slog.Logger
	Tracer   trace.Tracer
	Observer Observer         // optional
	Now      func() time.Time // optional; time.Now
	// Refresh coordinates token refresh; default: across replicas through
	// the store when it is session.Shared (Redis), else within this process.
	Refresh RefreshCoordinator
	// Replay remembers used back-channel logout tokens; default: the store
	// when it is a session.OnceMarker, else this process's memory.
	Replay session.OnceMarker
}

// Flow serves the authentication routes.
type Flow struct {
	cfg      Config
	provider *Provider
	sessions session.Store
	pages    Pages
	log      *slog.Logger
	tracer   trace.Tracer
	tracing  bool // tracer records: with a no-op tracer, steps open no span at all
	observer Observer
	now      func() time.Time
	flows    flowCookies
	logout   logoutCookie
	refresh  RefreshCoordinator
	revoker  session.Revoker // nil: back-channel logout is not possible
	replay   session.OnceMarker
}

// New builds the flow.
func New(d Deps) *Flow {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	if d.Config.RefreshSkew == 0 {
		d.Config.RefreshSkew = 30 * time.Second
	}
	refresh := d.Refresh
	if refresh == nil {
		if shared, ok := d.Sessions.(session.Shared); ok {
			refresh = NewSharedRefresh(shared, now)
		} else {
			refresh = NewLocalRefresh(now)
		}
	}
	replay := d.Replay
	if replay == nil {
		if m, ok := d.Sessions.(session.OnceMarker); ok {
			replay = m
		} else {
			replay = newMemoryOnce(now)
		}
	}
	revoker, _ := d.Sessions.(session.Revoker)
	tracer := d.Tracer
	_, noopTracer := tracer.(tracenoop.Tracer)
	if tracer == nil {
		tracer, noopTracer = tracenoop.NewTracerProvider().Tracer(""), true
	}
	return &Flow{
		cfg: d.Config, provider: d.Provider, sessions: d.Sessions, pages: d.Pages,
		log: d.Logger, tracer: tracer, tracing: !noopTracer, observer: d.Observer, now: now,
		flows:   flowCookies{sealer: d.Sealer, secure: d.Config.SecureCookies, ttl: 10 * time.Minute, now: now},
		logout:  logoutCookie{sealer: d.Sealer, secure: d.Config.SecureCookies, ttl: 10 * time.Minute, now: now},
		refresh: refresh, revoker: revoker, replay: replay,
	}
}

type nonceKey struct{}

func nonceFromContext(ctx context.Context) string {
	n, _ := ctx.Value(nonceKey{}).(string) // "" on refresh: refreshed ID tokens carry no nonce
	return n
}

// step is one traced auth step.
type step struct {
	f     *Flow
	name  string
	span  trace.Span
	start time.Time
	done  bool
}

// start returns the step by value: it stays on the caller's stack, one
// allocation less on every protected request.
func (f *Flow) start(ctx context.Context, name string) (context.Context, step) {
	if !f.tracing {
		// A no-op tracer's Start still wraps the context (an allocation on
		// every protected request); the span it would return does nothing.
		// (Not the context's span: ending the step must never end a caller's.)
		return ctx, step{f: f, name: name, span: trace.SpanFromContext(context.Background()), start: time.Now()}
	}
	ctx, span := f.tracer.Start(ctx, name)
	return ctx, step{f: f, name: name, span: span, start: time.Now()}
}

func (s *step) ok(ctx context.Context) {
	if s.done {
		return
	}
	s.done = true
	if s.span.IsRecording() { // the attribute list costs an allocation even when nothing records it
		s.span.SetAttributes(attribute.String("auth.outcome", "success"))
	}
	s.span.End()
	if s.f.observer != nil {
		s.f.observer.Step(ctx, s.name, "success", "", time.Since(s.start))
	}
}

func (s *step) fail(ctx context.Context, reason string, err error) {
	if s.done {
		return
	}
	s.done = true
	msg := safeError(err)
	s.span.SetAttributes(attribute.String("auth.outcome", "failure"), attribute.String("auth.failure.reason", reason))
	s.span.RecordError(errors.New(msg))
	s.span.SetStatus(codes.Error, reason)
	s.span.End()
	if s.f.observer != nil {
		s.f.observer.Step(ctx, s.name, "failure", reason, time.Since(s.start))
	}
}

// SignIn starts the flow: POST /auth/signin/zitadel.
func (f *Flow) SignIn() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, st := f.start(r.Context(), "auth.signin")
		relyingParty, err := f.provider.RP()
		if err == nil {
			err = f.provider.Available(ctx)
		}
		if err != nil {
			st.fail(ctx, ReasonProviderUnavailable, err)
			f.log.WarnContext(ctx, "sign-in refused: identity provider unavailable", "reason", ReasonProviderUnavailable, "error", safeError(err))
			w.Header().Set("Retry-After", "10")
			f.pages.Error(w, r, http.StatusServiceUnavailable, ReasonProviderUnavailable)
			return
		}
		target := r.PostFormValue("callbackUrl")
		if !config.IsLocalPath(target) {
			target = ""
		}
		fs := flowState{
			State:       randomString(32),
			Nonce:       randomString(32),
			Verifier:    oauth2.GenerateVerifier(),
			CallbackURL: target,
		}
		if err := f.flows.put(w, r, fs); err != nil {
			st.fail(ctx, ReasonProviderError, err)
			f.pages.Error(w, r, http.StatusInternalServerError, "internal")
			return
		}
		authURL := rp.AuthURL(fs.State, relyingParty,
			rp.WithCodeChallenge(oidc.NewSHACodeChallenge(fs.Verifier)),
			rp.AuthURLOpt(rp.WithURLParam("nonce", fs.Nonce)),
		)
		st.ok(ctx)
		http.Redirect(w, r, authURL, http.StatusSeeOther)
	})
}

// Callback finishes the flow: GET /auth/callback.
func (f *Flow) Callback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, st := f.start(r.Context(), "auth.callback")
		q := r.URL.Query()
		fail := func(status int, reason string, err error) {
			st.fail(ctx, reason, err)
			f.log.WarnContext(ctx, "sign-in failed", "reason", reason, "error", safeError(err))
			if reason == ReasonProviderUnavailable {
				w.Header().Set("Retry-After", "10")
			}
			f.pages.Error(w, r, status, reason)
		}

		if e := q.Get("error"); e != "" {
			f.flows.drop(w, q.Get("state"))
			if e == "access_denied" {
				st.fail(ctx, ReasonAccessDenied, safeErr("provider: access_denied"))
				http.Redirect(w, r, "/auth/signin?error="+ReasonAccessDenied, http.StatusSeeOther)
				return
			}
			fail(http.StatusBadRequest, ReasonProviderError, safeErr("provider returned error "+oauthErrorCode(e)))
			return
		}

		sctx, sst := f.start(ctx, "auth.state.verify")
		fs, err := f.flows.take(w, r, q.Get("state"))
		if err != nil {
			sst.fail(sctx, ReasonStateMismatch, err)
			fail(http.StatusBadRequest, ReasonStateMismatch, err)
			return
		}
		sst.ok(sctx)

		relyingParty, err := f.provider.RP()
		if err != nil {
			fail(http.StatusServiceUnavailable, ReasonProviderUnavailable, err)
			return
		}
		// RFC 9207: when the provider names itself, it must be the issuer we
		// started with (mix-up defence).
		if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != relyingParty.Issuer()) {
			fail(http.StatusBadRequest, ReasonIssuerMismatch, safeErr("iss parameter does not match the issuer"))
			return
		}
		code := q.Get("code")
		if code == "" {
			fail(http.StatusBadRequest, ReasonCodeMissing, safeErr("no code in callback"))
			return
		}

		ectx, est := f.start(ctx, "auth.code.exchange")
		token, err := relyingParty.OAuthConfig().Exchange(
			context.WithValue(ectx, oauth2.HTTPClient, relyingParty.HttpClient()), code,
			oauth2.VerifierOption(fs.Verifier))
		if err != nil {
			status, reason := http.StatusBadRequest, ReasonCodeExchangeFailed
			if isUnavailable(err) {
				status, reason = http.StatusServiceUnavailable, ReasonProviderUnavailable
			}
			est.fail(ectx, reason, err)
			fail(status, reason, err)
			return
		}
		est.ok(ectx)

		vctx, vst := f.start(ctx, "auth.id_token.verify")
		idToken, _ := token.Extra("id_token").(string)
		if idToken == "" {
			err := safeErr("token response has no id_token")
			vst.fail(vctx, ReasonIDTokenInvalid, err)
			fail(http.StatusBadRequest, ReasonIDTokenInvalid, err)
			return
		}
		claims, err := rp.VerifyTokens[*oidc.IDTokenClaims](context.WithValue(vctx, nonceKey{}, fs.Nonce),
			token.AccessToken, idToken, relyingParty.IDTokenVerifier())
		if err != nil {
			vst.fail(vctx, ReasonIDTokenInvalid, err)
			fail(http.StatusBadRequest, ReasonIDTokenInvalid, err)
			return
		}
		vst.ok(vctx)
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("enduser.id", claims.Subject))

		uctx, ust := f.start(ctx, "auth.userinfo")
		info, err := rp.Userinfo[*oidc.UserInfo](uctx, token.AccessToken, token.Type(), claims.Subject, relyingParty)
		if err != nil {
			status, reason := http.StatusBadRequest, ReasonUserinfoFailed
			switch {
			case errors.Is(err, rp.ErrUserInfoSubNotMatching):
				reason = ReasonUserinfoSubMismatch
			case isUnavailable(err):
				status, reason = http.StatusServiceUnavailable, ReasonProviderUnavailable
			}
			ust.fail(uctx, reason, err)
			fail(status, reason, err)
			return
		}
		ust.ok(uctx)

		cctx, cst := f.start(ctx, "auth.session.create")
		infoJSON, err := userinfoBeyondIDToken(info.Claims, claims.Claims)
		if err != nil {
			cst.fail(cctx, ReasonUserinfoFailed, err)
			fail(http.StatusBadRequest, ReasonUserinfoFailed, err)
			return
		}
		now := f.now()
		s := &session.Session{
			ID:           session.NewID(),
			Subject:      claims.Subject,
			IDToken:      idToken,
			AccessToken:  token.AccessToken,
			RefreshToken: token.RefreshToken,
			TokenType:    token.Type(),
			Userinfo:     infoJSON,
			CreatedAt:    now.Unix(),
			LastSeen:     now.Unix(),
			ExpiresAt:    now.Add(f.cfg.SessionDuration).Unix(),
		}
		if sid, ok := claims.Claims["sid"].(string); ok {
			s.ProviderSID = sid
		}
		if !token.Expiry.IsZero() {
			s.AccessExpiry = token.Expiry.Unix()
		}
		// A new session every time: an old one (perhaps planted) is ended
		// first, so no session ID survives a login (no fixation), and a
		// failed save below leaves nobody signed in.
		_ = f.sessions.Delete(w, r, nil)
		if err := f.sessions.Save(w, r, s); err != nil {
			reason, status := ReasonSessionStore, http.StatusServiceUnavailable
			if errors.Is(err, session.ErrTooLarge) {
				reason, status = ReasonSessionTooLarge, http.StatusInternalServerError
				f.log.ErrorContext(ctx, "session does not fit in a cookie: use SESSION_STORE=redis or request fewer scopes",
					"reason", reason)
			}
			cst.fail(cctx, reason, err)
			fail(status, reason, err)
			return
		}
		cst.ok(cctx)
		st.ok(ctx)
		f.log.InfoContext(ctx, "signed in", "enduser.id", claims.Subject)

		target := f.cfg.PostLoginURL
		if config.IsLocalPath(fs.CallbackURL) {
			target = fs.CallbackURL
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
	})
}

// Logout ends the local session at once, then sends the browser to the
// provider's end_session endpoint: POST /auth/logout.
func (f *Flow) Logout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, st := f.start(r.Context(), "auth.logout")
		s, err := f.sessions.Load(r)
		if errors.Is(err, session.ErrUnavailable) {
			// Clearing only the cookie would leave the session alive for any
			// copy of it: say so, and let the user try again.
			st.fail(ctx, ReasonSessionStore, err)
			f.log.ErrorContext(ctx, "logout: session store unavailable", "error", safeError(err))
			w.Header().Set("Retry-After", "5")
			f.pages.Error(w, r, http.StatusServiceUnavailable, ReasonSessionStore)
			return
		}
		if err == nil {
			if err := f.sessions.Delete(w, r, s); err != nil {
				st.fail(ctx, ReasonSessionStore, err)
				f.log.ErrorContext(ctx, "could not delete session", "error", safeError(err))
				f.pages.Error(w, r, http.StatusServiceUnavailable, ReasonSessionStore)
				return
			}
			f.log.InfoContext(ctx, "signed out", "enduser.id", s.Subject)
		} else {
			_ = f.sessions.Delete(w, r, nil) // clear whatever cookie there is
		}
		endpoint := f.provider.EndSessionEndpoint()
		if endpoint == "" {
			// Without the provider, only the local session ends; say so.
			st.fail(ctx, ReasonProviderUnavailable, ErrProviderUnavailable)
			http.Redirect(w, r, "/auth/logout/success?provider=unavailable", http.StatusSeeOther)
			return
		}
		state := randomString(24)
		f.logout.put(w, state)
		fields := []Field{{"client_id", f.cfg.ClientID}, {"post_logout_redirect_uri", f.cfg.PostLogoutURL}, {"state", state}}
		if s != nil && s.IDToken != "" {
			fields = append([]Field{{"id_token_hint", s.IDToken}}, fields...)
		}
		st.ok(ctx)
		f.pages.EndSession(w, r, endpoint, fields)
	})
}

// LogoutCallback is where the provider sends the browser back after
// ending its session: GET /auth/logout/callback.
func (f *Flow) LogoutCallback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, st := f.start(r.Context(), "auth.logout.callback")
		if !f.logout.take(w, r, r.URL.Query().Get("state")) {
			st.fail(ctx, ReasonLogoutState, safeErr("logout state does not match"))
			http.Redirect(w, r, "/auth/logout/error", http.StatusSeeOther)
			return
		}
		st.ok(ctx)
		http.Redirect(w, r, "/auth/logout/success", http.StatusSeeOther)
	})
}

// Userinfo returns fresh userinfo from the provider as JSON: GET /auth/userinfo.
func (f *Flow) Userinfo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := SessionFrom(r.Context())
		ctx, st := f.start(r.Context(), "auth.userinfo")
		w.Header().Set("Content-Type", "application/json")
		relyingParty, err := f.provider.RP()
		if err != nil {
			st.fail(ctx, ReasonProviderUnavailable, err)
			writeJSONError(w, http.StatusServiceUnavailable, ReasonProviderUnavailable)
			return
		}
		info, err := rp.Userinfo[*oidc.UserInfo](ctx, s.AccessToken, tokenType(s), s.Subject, relyingParty)
		if err != nil {
			status, reason := http.StatusBadGateway, ReasonUserinfoFailed
			if isUnavailable(err) {
				status, reason = http.StatusServiceUnavailable, ReasonProviderUnavailable
			} else if errors.Is(err, rp.ErrUserInfoSubNotMatching) {
				reason = ReasonUserinfoSubMismatch
			}
			st.fail(ctx, reason, err)
			f.log.WarnContext(ctx, "userinfo failed", "reason", reason, "error", safeError(err))
			writeJSONError(w, status, reason)
			return
		}
		st.ok(ctx)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(info)
	})
}

func tokenType(s *session.Session) string {
	if s.TokenType == "" {
		return oidc.BearerToken
	}
	return s.TokenType
}

func writeJSONError(w http.ResponseWriter, status int, code string) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
}

// oauthErrorCode keeps a provider's error code only if it is one of the
// registered OAuth/OIDC codes, so nothing a URL carries is echoed as is.
func oauthErrorCode(e string) string {
	switch e {
	case "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type", "invalid_scope",
		"server_error", "temporarily_unavailable", "interaction_required", "login_required",
		"account_selection_required", "consent_required", "invalid_request_uri", "invalid_request_object",
		"request_not_supported", "request_uri_not_supported", "registration_not_supported":
		return e
	}
	return "unknown"
}

// redirectToSignIn sends the browser to sign in, keeping where it wanted to go.
func redirectToSignIn(w http.ResponseWriter, r *http.Request, reason string) {
	q := url.Values{}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if target := r.URL.RequestURI(); config.IsLocalPath(target) {
			q.Set("callbackUrl", target)
		}
	}
	if reason != "" {
		q.Set("error", reason)
	}
	u := "/auth/signin"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}
