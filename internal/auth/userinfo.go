package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/internal/session"
)

// Userinfo returns fresh userinfo from the provider as JSON: GET
// /auth/userinfo (behind RequireSession).
func (rp *RelyingParty) Userinfo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := SessionFrom(r.Context())
		var info *oidc.UserInfo
		err := rp.step(r.Context(), "auth.userinfo", func(ctx context.Context) error {
			return rp.withinProviderTimeout(ctx, func(ctx context.Context) error {
				relyingParty, err := rp.provider.RP()
				if err != nil {
					return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, err)
				}
				info, err = oidcrp.Userinfo[*oidc.UserInfo](ctx, s.AccessToken, tokenType(s), s.Subject, relyingParty)
				return userinfoFailure(err, http.StatusBadGateway)
			})
		})
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			reason, status := failureOf(err)
			rp.log.WarnContext(r.Context(), "userinfo failed", "reason", reason, "error", safeError(err))
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": reason})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(info)
	})
}

// userinfoFailure classifies a userinfo call's error (at sign-in and on
// this route): the provider unreachable (503, try again), the answer for
// another subject, or any other refusal (status).
func userinfoFailure(err error, status int) error {
	switch {
	case err == nil:
		return nil
	case isUnavailable(err):
		return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, err)
	case errors.Is(err, oidcrp.ErrUserInfoSubNotMatching):
		return fail(ReasonUserinfoSubMismatch, status, err)
	}
	return fail(ReasonUserinfoFailed, status, err)
}

func tokenType(s *session.Session) string {
	if s.TokenType == "" {
		return oidc.BearerToken
	}
	return s.TokenType
}
