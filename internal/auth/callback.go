package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/session"
)

// StepCallback is the callback's step (span, metrics, Observer): its
// success is a completed sign-in.
const StepCallback = "auth.callback"

// Callback finishes a sign-in: GET /auth/callback. Its steps: match the
// state to this browser's pending sign-in, exchange the code with the PKCE
// verifier, verify the ID token (nonce included), read userinfo for the
// same subject, and start a new session.
func (rp *RelyingParty) Callback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var target string
		err := rp.step(r.Context(), StepCallback, func(ctx context.Context) error {
			return rp.withinProviderTimeout(ctx, func(ctx context.Context) (err error) {
				target, err = rp.callback(ctx, w, r, r.URL.Query())
				return err
			})
		})
		switch reason, _ := failureOf(err); {
		case err == nil:
			http.Redirect(w, r, target, http.StatusSeeOther)
		case reason == ReasonAccessDenied: // the user said no: back to the sign-in page, which says so
			http.Redirect(w, r, "/auth/signin?error="+ReasonAccessDenied, http.StatusSeeOther)
		case reason == ReasonSessionExpired: // ended at the provider meanwhile (back-channel logout)
			rp.log.InfoContext(r.Context(), "sign-in refused: the provider ended its session meanwhile", "error", safeError(err))
			http.Redirect(w, r, "/auth/signin?error="+ReasonSessionExpired, http.StatusSeeOther)
		default:
			rp.log.WarnContext(r.Context(), "sign-in failed", "reason", reason, "error", safeError(err))
			rp.respond(w, r, err)
		}
	})
}

// callback runs the callback's steps and returns where the browser goes next.
func (rp *RelyingParty) callback(ctx context.Context, w http.ResponseWriter, r *http.Request, q url.Values) (string, error) {
	if e := q.Get("error"); e != "" {
		rp.signIns.drop(w, q.Get("state"))
		if e == "access_denied" {
			return "", fail(ReasonAccessDenied, http.StatusSeeOther, safeErr("provider: access_denied"))
		}
		return "", fail(ReasonProviderError, http.StatusBadRequest, safeErr("provider returned error "+oauthErrorCode(e)))
	}
	var fs pendingSignIn
	if err := rp.step(ctx, "auth.state.verify", func(context.Context) (err error) {
		fs, err = rp.signIns.take(w, r, q.Get("state"))
		return fail(ReasonStateMismatch, http.StatusBadRequest, err)
	}); err != nil {
		return "", err
	}
	relyingParty, err := rp.provider.RP()
	if err != nil {
		return "", fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, err)
	}
	// RFC 9207: when the provider names itself, it must be the issuer we
	// started with (mix-up defence).
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != relyingParty.Issuer()) {
		return "", fail(ReasonIssuerMismatch, http.StatusBadRequest, safeErr("iss parameter does not match the issuer"))
	}
	code := q.Get("code")
	if code == "" {
		return "", fail(ReasonCodeMissing, http.StatusBadRequest, safeErr("no code in callback"))
	}

	var token *oauth2.Token
	exchangeStarted := rp.now()
	if err := rp.step(ctx, "auth.code.exchange", func(ctx context.Context) (err error) {
		token, err = relyingParty.OAuthConfig().Exchange(
			context.WithValue(ctx, oauth2.HTTPClient, relyingParty.HttpClient()), code,
			oauth2.VerifierOption(fs.Verifier))
		if isUnavailable(err) {
			return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, err)
		}
		return fail(ReasonCodeExchangeFailed, http.StatusBadRequest, err)
	}); err != nil {
		return "", err
	}

	idToken, _ := token.Extra("id_token").(string)
	var claims *oidc.IDTokenClaims
	if err := rp.step(ctx, "auth.id_token.verify", func(ctx context.Context) (err error) {
		if idToken == "" {
			return fail(ReasonIDTokenInvalid, http.StatusBadRequest, safeErr("token response has no id_token"))
		}
		claims, err = oidcrp.VerifyTokens[*oidc.IDTokenClaims](context.WithValue(ctx, nonceKey{}, fs.Nonce),
			token.AccessToken, idToken, relyingParty.IDTokenVerifier())
		return fail(ReasonIDTokenInvalid, http.StatusBadRequest, err)
	}); err != nil {
		return "", err
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("enduser.id", claims.Subject))

	var info *oidc.UserInfo
	if err := rp.step(ctx, "auth.userinfo", func(ctx context.Context) (err error) {
		info, err = oidcrp.Userinfo[*oidc.UserInfo](ctx, token.AccessToken, token.Type(), claims.Subject, relyingParty)
		return userinfoFailure(err, http.StatusBadRequest)
	}); err != nil {
		return "", err
	}

	if err := rp.step(ctx, "auth.session.create", func(ctx context.Context) error {
		return rp.startSession(ctx, w, r, token, idToken, claims, info, exchangeStarted)
	}); err != nil {
		return "", err
	}
	rp.log.InfoContext(ctx, "signed in", "enduser.id", claims.Subject)
	return rp.afterSignIn(fs.CallbackURL), nil
}

// afterSignIn is where a completed sign-in lands: the page it started
// from when the return-URL policy (still) accepts it, else the configured
// post-login URL.
func (rp *RelyingParty) afterSignIn(callbackURL string) string {
	target, _ := rp.ReturnURL(callbackURL)
	return target
}

// startSession saves a new session for the verified sign-in. An old one
// (perhaps planted) is ended first, so no session ID survives a login (no
// fixation), and a failed save leaves nobody signed in.
func (rp *RelyingParty) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request,
	token *oauth2.Token, idToken string, claims *oidc.IDTokenClaims, info *oidc.UserInfo, exchangeStarted time.Time) error {
	infoJSON, err := storedUserinfo(info.Claims, claims.Claims)
	if err != nil {
		return fail(ReasonUserinfoFailed, http.StatusBadRequest, err)
	}
	now := rp.now()
	s := &session.Session{
		ID:           session.NewID(),
		Subject:      claims.Subject,
		IDToken:      idToken,
		AccessToken:  token.AccessToken,
		RefreshToken: token.RefreshToken,
		TokenType:    token.Type(),
		Userinfo:     infoJSON,
		RolesAt:      now.Unix(),
		CreatedAt:    now.Unix(),
		LastSeen:     now.Unix(),
		ExpiresAt:    now.Add(rp.cfg.SessionDuration).Unix(),
		// A back-channel logout that arrives from now on, while this
		// sign-in is in flight, must not be undone by its save.
		SignInStarted: exchangeStarted,
	}
	s.ProviderSID, _ = claims.Claims["sid"].(string)
	if !token.Expiry.IsZero() {
		s.AccessExpiry = token.Expiry.Unix()
	}
	_ = rp.sessions.Delete(w, r, nil)
	err = rp.sessions.Save(w, r, s)
	switch {
	case errors.Is(err, session.ErrTooLarge):
		rp.log.ErrorContext(ctx, "session too large to keep: request fewer scopes or less metadata (with SESSION_STORE=cookie: use redis)",
			"reason", ReasonSessionTooLarge, "detail", err.Error())
		return fail(ReasonSessionTooLarge, http.StatusInternalServerError, err)
	case errors.Is(err, session.ErrLoggedOut):
		return fail(ReasonSessionExpired, http.StatusSeeOther, err)
	}
	return fail(ReasonSessionStore, http.StatusServiceUnavailable, err)
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

// storedUserinfo is the userinfo response as the session keeps it: without
// the claims the ID token already carries with the same value
// (organisation, often profile), so the session stays small, and
// claims.ProfileOf merges the two again; but with every roles claim, as
// the roles are read from userinfo alone (claims.Roles). Both maps are the
// library's parse of the whole JSON (the Claims of oidc.UserInfo and
// oidc.IDTokenClaims): nothing is decoded twice.
func storedUserinfo(info, idClaims map[string]any) ([]byte, error) {
	kept := make(map[string]any, len(info))
	for k, v := range info {
		if iv, ok := idClaims[k]; ok && !isRolesClaim(k) && reflect.DeepEqual(iv, v) {
			continue
		}
		kept[k] = v
	}
	return json.Marshal(kept)
}

func isRolesClaim(k string) bool {
	return strings.HasPrefix(k, "urn:zitadel:iam:org:project:") && strings.HasSuffix(k, ":roles")
}
