package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// backchannelEvent is the member the events claim must carry (OpenID
// Connect Back-Channel Logout 1.0, section 2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

const (
	// logoutClockSkew tolerates clocks that differ between provider and us.
	logoutClockSkew = time.Minute
	// logoutMaxAge bounds how old a logout token without exp may be (and
	// so how long its jti must be remembered).
	logoutMaxAge = 5 * time.Minute
	// maxLogoutBody is far above any real logout_token.
	maxLogoutBody = 64 << 10
)

// logoutError is a back-channel logout refusal: the error code and a
// description that quotes nothing from the token.
type logoutError struct {
	code, desc string
}

func (e *logoutError) Error() string { return e.code + ": " + e.desc }

func invalidLogout(desc string) *logoutError {
	return &logoutError{code: "invalid_request", desc: desc}
}

// BackchannelLogout receives the provider's logout_token and ends the
// sessions it names on every replica: POST /auth/backchannel-logout
// (OpenID Connect Back-Channel Logout 1.0). 200 on success; 400 with a
// JSON error otherwise, as the specification asks; 501 with the cookie
// store, which keeps nothing on the server to end.
func (rp *RelyingParty) BackchannelLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if rp.revoker == nil {
			_ = rp.step(r.Context(), "auth.backchannel_logout", func(context.Context) error {
				return fail(ReasonBackchannelLogout, http.StatusNotImplemented, errors.New("session store keeps nothing server-side"))
			})
			writeLogoutError(w, http.StatusNotImplemented, &logoutError{code: "not_supported",
				desc: "back-channel logout needs server-side sessions: set SESSION_STORE=redis (or memory for a single replica); " +
					"cookie sessions live only in the browser, so there is nothing here to end"})
			return
		}
		var n int
		var sub, sid string
		err := rp.stepOutcome(r.Context(), "auth.backchannel_logout", func(ctx context.Context) (string, error) {
			var err error
			n, sub, sid, err = rp.backchannelLogout(ctx, w, r)
			if err == nil && n == 0 {
				return "no_match", nil
			}
			return "success", fail(ReasonBackchannelLogout, http.StatusBadRequest, err)
		})
		if err != nil {
			var le *logoutError
			if !errors.As(err, &le) {
				le = &logoutError{code: "temporarily_unavailable", desc: "the logout could not be completed now; send it again"}
			}
			rp.log.WarnContext(r.Context(), "back-channel logout rejected", "reason", le.code, "detail", le.desc, "error", safeError(err))
			writeLogoutError(w, http.StatusBadRequest, le)
			return
		}
		if n == 0 {
			// Valid, and remembered: a sign-in of that session still in
			// flight will be refused. Nothing here had it (another
			// application's, expired, or signed out already).
			rp.log.InfoContext(r.Context(), "back-channel logout matched no session", "enduser.id", sub, "sid_given", sid != "", "sessions_ended", 0)
		} else {
			rp.log.InfoContext(r.Context(), "back-channel logout", "enduser.id", sub, "sid_given", sid != "", "sessions_ended", n)
		}
		w.WriteHeader(http.StatusOK)
	})
}

func (rp *RelyingParty) backchannelLogout(ctx context.Context, w http.ResponseWriter, r *http.Request) (n int, sub, sid string, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		return 0, "", "", invalidLogout("the body must be a form with logout_token")
	}
	tokens := r.PostForm["logout_token"]
	if len(tokens) != 1 || tokens[0] == "" {
		return 0, "", "", invalidLogout("exactly one logout_token is required")
	}
	claims, err := rp.verifyLogoutToken(ctx, tokens[0])
	if err != nil {
		return 0, "", "", err
	}

	// Replays: the jti is remembered (by every replica, with Redis) until
	// the token would expire anyway.
	until := claims.Expiration.AsTime()
	if until.IsZero() {
		until = claims.IssuedAt.AsTime().Add(logoutMaxAge)
	}
	until = until.Add(logoutClockSkew)
	sum := sha256.Sum256([]byte(claims.Issuer + "\x00" + claims.JWTID))
	key := "bcl:" + hex.EncodeToString(sum[:])
	first, err := rp.replay.MarkOnce(ctx, key, until)
	if err != nil {
		return 0, "", "", fmt.Errorf("remember logout token: %w", err)
	}
	if !first {
		return 0, "", "", invalidLogout("this logout_token was already used")
	}

	// With a sid, the sessions whose ID token carried it; else all of the
	// user's. The store also remembers the logout, so that a sign-in of
	// that session (or user) in flight right now cannot save afterwards.
	if claims.SessionID != "" {
		n, err = rp.revoker.DeleteByProviderSID(ctx, claims.SessionID)
	} else {
		n, err = rp.revoker.DeleteBySubject(ctx, claims.Subject)
	}
	if err != nil {
		// Let the provider's retry through: this token did not take effect.
		_ = rp.replay.Unmark(context.WithoutCancel(ctx), key)
		return 0, "", "", fmt.Errorf("end sessions: %w", err)
	}
	return n, claims.Subject, claims.SessionID, nil
}

// logoutClaims are a logout token's claims, with the signature algorithm
// the signature check reports.
type logoutClaims struct {
	oidc.LogoutTokenClaims
	alg jose.SignatureAlgorithm
}

func (c *logoutClaims) SetSignatureAlgorithm(a jose.SignatureAlgorithm) { c.alg = a }

// verifyLogoutToken validates per section 2.6 of the specification, with
// the relying party's own key set (rotated provider keys are fetched as
// for ID tokens, rate-limited).
func (rp *RelyingParty) verifyLogoutToken(ctx context.Context, token string) (*logoutClaims, error) {
	relyingParty, err := rp.provider.RP()
	if err != nil {
		return nil, err
	}
	v := relyingParty.IDTokenVerifier()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, invalidLogout("logout_token is not a signed JWT (encrypted tokens are not accepted)")
	}
	if err := checkLogoutType(parts[0]); err != nil {
		return nil, err
	}
	c := new(logoutClaims)
	payload, err := oidc.ParseToken(token, c)
	if err != nil {
		return nil, invalidLogout("logout_token is not a JWT")
	}
	if err := oidc.CheckSignature(ctx, token, payload, c, v.SupportedSignAlgs, v.KeySet); err != nil {
		return nil, &logoutError{code: "invalid_request", desc: "logout_token signature is not the provider's: " + safeError(err)}
	}
	if c.Issuer != v.Issuer {
		return nil, invalidLogout("logout_token iss is not the provider")
	}
	if !slices.Contains(c.Audience, v.ClientID) {
		return nil, invalidLogout("logout_token aud does not name this client")
	}
	now := rp.now()
	iat := c.IssuedAt.AsTime()
	switch {
	case iat.IsZero():
		return nil, invalidLogout("logout_token has no iat")
	case iat.After(now.Add(logoutClockSkew)):
		return nil, invalidLogout("logout_token iat is in the future")
	}
	if exp := c.Expiration.AsTime(); !exp.IsZero() {
		if !now.Before(exp.Add(logoutClockSkew)) {
			return nil, invalidLogout("logout_token has expired")
		}
	} else if now.Sub(iat) > logoutMaxAge {
		return nil, invalidLogout("logout_token without exp is too old")
	}
	if _, ok := c.Claims["nonce"]; ok {
		return nil, invalidLogout("logout_token must not carry a nonce")
	}
	if ev, ok := c.Events[backchannelEvent].(map[string]any); !ok || ev == nil {
		return nil, invalidLogout("logout_token events lack the back-channel logout event")
	}
	if c.Subject == "" && c.SessionID == "" {
		return nil, invalidLogout("logout_token names neither sub nor sid")
	}
	if c.JWTID == "" {
		return nil, invalidLogout("logout_token has no jti")
	}
	return c, nil
}

// checkLogoutType refuses JWTs typed as something else (an access token
// must never pass as a logout token); untyped and plain JWTs are allowed,
// as providers are only encouraged to set logout+jwt.
func checkLogoutType(header string) error {
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return invalidLogout("logout_token header is malformed")
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return invalidLogout("logout_token header is malformed")
	}
	switch strings.ToLower(h.Typ) {
	case "", "jwt", "logout+jwt", "application/logout+jwt":
		return nil
	}
	return invalidLogout("logout_token typ is not logout+jwt")
}

func writeLogoutError(w http.ResponseWriter, status int, e *logoutError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e.code, "error_description": e.desc})
}
