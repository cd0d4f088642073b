package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/session"
)

type sessionKey struct{}

// SessionFrom returns the session RequireSession or OptionalSession put in
// ctx, or nil.
func SessionFrom(ctx context.Context) *session.Session {
	s, _ := ctx.Value(sessionKey{}).(*session.Session)
	return s
}

// WithSession returns ctx carrying s (for tests of handlers behind the middleware).
func WithSession(ctx context.Context, s *session.Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// touchInterval limits how often the idle timestamp is written back: not
// on every request (a cookie rewrite per request), but often enough that an
// active user never hits the idle timeout: at most a minute, at most a
// tenth of the timeout.
func (f *Flow) touchInterval() time.Duration {
	d := time.Minute
	if t := f.cfg.IdleTimeout / 10; t > 0 && t < d {
		d = t
	}
	return max(d, time.Second)
}

// RequireSession lets requests with a valid session through, with the
// session in the context; others are sent to sign in.
func (f *Flow) RequireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := f.loadSession(w, r, true)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(WithSession(r.Context(), s)))
	})
}

// OptionalSession puts a valid session in the context when there is one
// (the landing page shows whether you are signed in) and never redirects.
func (f *Flow) OptionalSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := f.sessions.Load(r)
		if err == nil && !s.Expired(f.now(), f.cfg.IdleTimeout) {
			r = r.WithContext(WithSession(r.Context(), s))
		}
		next.ServeHTTP(w, r)
	})
}

func (f *Flow) loadSession(w http.ResponseWriter, r *http.Request, refresh bool) (*session.Session, bool) {
	ctx, st := f.start(r.Context(), "auth.session.load")
	s, err := f.sessions.Load(r)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		st.fail(ctx, ReasonSessionStore, err)
		f.log.ErrorContext(ctx, "session store unavailable", "error", safeError(err))
		w.Header().Set("Retry-After", "5")
		f.pages.Error(w, r, http.StatusServiceUnavailable, ReasonSessionStore)
		return nil, false
	case err != nil:
		st.fail(ctx, ReasonNoSession, err)
		redirectToSignIn(w, r, "")
		return nil, false
	}
	now := f.now()
	if s.Expired(now, f.cfg.IdleTimeout) {
		st.fail(ctx, ReasonSessionExpired, safeErr("session past its absolute or idle limit"))
		_ = f.sessions.Delete(w, r, s)
		redirectToSignIn(w, r, ReasonSessionExpired)
		return nil, false
	}
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("enduser.id", s.Subject))
	}
	dirty := s.Reseal
	if refresh && s.AccessExpiry > 0 && now.Add(f.cfg.RefreshSkew).Unix() >= s.AccessExpiry {
		if err := f.refreshSession(ctx, s); err != nil {
			if f.storeTrouble(ctx, w, r, &st, err) {
				return nil, false
			}
			reason := ReasonRefreshFailed
			if isUnavailable(err) {
				reason = ReasonProviderUnavailable
			}
			st.fail(ctx, reason, err)
			f.log.WarnContext(ctx, "token refresh failed; session ended", "reason", reason, "error", safeError(err))
			_ = f.sessions.Delete(w, r, s)
			redirectToSignIn(w, r, ReasonSessionExpired)
			return nil, false
		}
		dirty = true
	}
	if now.Unix()-s.LastSeen >= int64(f.touchInterval()/time.Second) {
		s.LastSeen = now.Unix()
		dirty = true
	}
	if dirty {
		s.Reseal = false
		if err := f.sessions.Save(w, r, s); err != nil {
			if f.storeTrouble(ctx, w, r, &st, err) {
				return nil, false
			}
			st.fail(ctx, ReasonSessionStore, err)
			f.log.ErrorContext(ctx, "could not save session", "error", safeError(err))
			w.Header().Set("Retry-After", "5")
			f.pages.Error(w, r, http.StatusServiceUnavailable, ReasonSessionStore)
			return nil, false
		}
	}
	st.ok(ctx)
	return s, true
}

// storeTrouble answers for the two store outcomes a refresh or save can
// meet besides success: the store is down (friendly 503, the session is
// kept for when it returns), or the session was ended elsewhere meanwhile
// (logout on another replica, back-channel logout: sign in again).
func (f *Flow) storeTrouble(ctx context.Context, w http.ResponseWriter, r *http.Request, st *step, err error) bool {
	switch {
	case errors.Is(err, session.ErrUnavailable):
		st.fail(ctx, ReasonSessionStore, err)
		f.log.ErrorContext(ctx, "session store unavailable", "error", safeError(err))
		w.Header().Set("Retry-After", "5")
		f.pages.Error(w, r, http.StatusServiceUnavailable, ReasonSessionStore)
		return true
	case errors.Is(err, session.ErrNoSession):
		st.fail(ctx, ReasonNoSession, err)
		redirectToSignIn(w, r, "")
		return true
	}
	return false
}

// refreshSession renews s's tokens once, however many requests ask at once.
func (f *Flow) refreshSession(ctx context.Context, s *session.Session) error {
	ctx, st := f.start(ctx, "auth.token.refresh")
	if s.RefreshToken == "" {
		err := safeErr("access token expired and no refresh token (request offline_access)")
		st.fail(ctx, ReasonRefreshFailed, err)
		return err
	}
	t, err := f.refresh.Refresh(ctx, s, func(ctx context.Context) (*Tokens, error) {
		relyingParty, err := f.provider.RP()
		if err != nil {
			return nil, err
		}
		tokens, err := rp.RefreshTokens[*oidc.IDTokenClaims](ctx, relyingParty, s.RefreshToken, "", "")
		if err != nil {
			return nil, err
		}
		if tokens.IDTokenClaims != nil && tokens.IDTokenClaims.Subject != s.Subject {
			return nil, safeErr("refreshed ID token is for another subject")
		}
		out := &Tokens{
			AccessToken:  tokens.AccessToken,
			RefreshToken: tokens.RefreshToken,
			IDToken:      tokens.IDToken,
			TokenType:    tokens.Type(),
			Expiry:       tokens.Expiry,
		}
		if out.RefreshToken == "" {
			out.RefreshToken = s.RefreshToken // provider does not rotate
		}
		return out, nil
	})
	if err != nil {
		reason := ReasonRefreshFailed
		if isUnavailable(err) {
			reason = ReasonProviderUnavailable // the same reason auth.session.load reports
		}
		st.fail(ctx, reason, err)
		return fmt.Errorf("refresh tokens: %w", err)
	}
	applyTokens(s, t)
	st.ok(ctx)
	return nil
}

// RequireRole lets through sessions whose ZITADEL project roles include
// one of roles; others get a friendly 403. Use behind RequireSession.
func (f *Flow) RequireRole(roles ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := SessionFrom(r.Context())
			if s != nil {
				p := ProfileOf(s)
				for _, want := range roles {
					if p.HasRole(want) {
						next.ServeHTTP(w, r)
						return
					}
				}
			}
			f.pages.Error(w, r, http.StatusForbidden, ReasonForbidden)
		})
	}
}
