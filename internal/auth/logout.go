package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/session"
)

// Logout ends the local session at once, then sends the browser to the
// provider's end_session endpoint: POST /auth/logout.
func (rp *RelyingParty) Logout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s *session.Session
		var endpoint string
		var fields []Field
		err := rp.step(r.Context(), "auth.logout", func(ctx context.Context) error {
			var err error
			s, err = rp.sessions.Load(r)
			switch {
			case errors.Is(err, session.ErrUnavailable):
				// Clearing only the cookie would leave the session alive for
				// any copy of it: say so, and let the user try again.
				return fail(ReasonSessionStore, http.StatusServiceUnavailable, err)
			case err != nil:
				_ = rp.sessions.Delete(w, r, nil) // clear whatever cookie there is
			default:
				if err := rp.sessions.Delete(w, r, s); err != nil {
					return fail(ReasonSessionStore, http.StatusServiceUnavailable, err)
				}
				rp.log.InfoContext(ctx, "signed out", "enduser.id", s.Subject)
			}
			if endpoint = rp.provider.EndSessionEndpoint(); endpoint == "" {
				// Without the provider, only the local session ends.
				return fail(ReasonProviderUnavailable, http.StatusSeeOther, ErrProviderUnavailable)
			}
			state := randomString(24)
			rp.logout.put(w, state)
			fields = []Field{{"client_id", rp.cfg.ClientID}, {"post_logout_redirect_uri", rp.cfg.PostLogoutURL}, {"state", state}}
			if s != nil && s.IDToken != "" {
				fields = append([]Field{{"id_token_hint", s.IDToken}}, fields...)
			}
			return nil
		})
		switch reason, _ := failureOf(err); {
		case err == nil:
			rp.pages.EndSession(w, r, endpoint, fields)
		case reason == ReasonProviderUnavailable:
			http.Redirect(w, r, "/auth/logout/success?provider=unavailable", http.StatusSeeOther) // say so
		default:
			rp.respond(w, r, err)
		}
	})
}

// LogoutCallback is where the provider sends the browser back after
// ending its session: GET /auth/logout/callback.
func (rp *RelyingParty) LogoutCallback() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := rp.step(r.Context(), "auth.logout.callback", func(context.Context) error {
			if !rp.logout.take(w, r, r.URL.Query().Get("state")) {
				return fail(ReasonLogoutState, http.StatusSeeOther, safeErr("logout state does not match"))
			}
			return nil
		})
		if err != nil {
			http.Redirect(w, r, "/auth/logout/error", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/auth/logout/success", http.StatusSeeOther)
	})
}

// logoutCookie remembers the state sent to the provider's end_session
// endpoint so the logout callback can tell our own round trip from a forged one.
type logoutCookie struct{ flowCookies }

func (l logoutCookie) name() string { return l.cookieName("gatehouse-logout") }

func (l logoutCookie) put(w http.ResponseWriter, state string) { l.set(w, l.name(), []byte(state)) }

// take checks state against the cookie and deletes it, whatever the outcome.
func (l logoutCookie) take(w http.ResponseWriter, r *http.Request, state string) bool {
	c, err := r.Cookie(l.name())
	if err != nil {
		return false
	}
	l.clear(w, l.name())
	want, _, err := l.open(l.name(), c.Value)
	return err == nil && state != "" && subtle.ConstantTimeCompare(want, []byte(state)) == 1
}
