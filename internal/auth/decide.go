package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/url"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/session"
)

// Outcome is what a decision says about a request: a closed set, shared by
// the span, the metric and the responders.
type Outcome int

const (
	Allowed         Outcome = iota // a valid session that meets the rules
	Unauthenticated                // no session, or one that ended (expired, refresh refused, ended elsewhere)
	Forbidden                      // signed in, but the rules refuse (a missing role, another organisation)
	Unavailable                    // the session store or the provider cannot answer now (the session is kept): try again
)

// String is the outcome as spans and metrics name it (auth.outcome).
func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// Decision is the answer for one request.
type Decision struct {
	Outcome Outcome
	// Identity is who the request is (Allowed, Forbidden), else nil.
	// Shared between requests: read it, never change it.
	Identity *Identity
	// Session is the session behind Identity (Allowed, Forbidden), else
	// nil. Today every credential is a session; a bearer token (issue 15)
	// will decide with an Identity and no Session.
	Session *session.Session
	Denial  forward.Denial // which rule refused (Forbidden)
	Reason  string         // why it may not pass (Reason*); "" when allowed
	Err     error          // the cause, for the log (safeError); nil when allowed
}

// AccessToken is the access token of the decision's credential ("" when
// there is none), for FORWARD_ACCESS_TOKEN.
func (d Decision) AccessToken() string {
	if d.Session == nil {
		return ""
	}
	return d.Session.AccessToken
}

// Decide is the one answer to "who is this request, and may it pass?",
// for Gatehouse's own pages (RequireSession, RequireRole) and every
// forward-auth endpoint alike, so none of them can disagree about the same
// cookie. It finds the request's credential and checks it (credential),
// then the rules (any session when they are empty). The session's cookie
// is written on w when the session changed (refresh, roles re-read, idle
// stamp, re-seal) and cleared when it ended. It allocates nothing beyond
// the session lookup (BenchmarkDecision_Verify, internal/forwardauth).
//
// A session ends only on the provider's word (a refused refresh) or its
// own limits: while the provider cannot be asked, a request is served as
// long as the access token is still valid, and is Unavailable (503, the
// session kept) after that; rules on roles older than ROLES_MAX_AGE that
// cannot be read again are Unavailable too.
func (rp *RelyingParty) Decide(w http.ResponseWriter, r *http.Request, rules forward.Rules) Decision {
	var d Decision
	rolesFresh, err := rp.credential(w, r, &d)
	if err != nil {
		d.Reason, _ = failureOf(err)
		d.Err, d.Outcome = err, Unauthenticated
		if d.Reason == ReasonSessionStore || d.Reason == ReasonProviderUnavailable {
			d.Outcome = Unavailable
		}
		d.Session = nil
		return d
	}
	if rules.HasRoles() && !rolesFresh {
		// They could not be read again (provider unreachable): too old to
		// decide on, and not wrong enough to refuse on.
		d.Outcome, d.Reason = Unavailable, ReasonProviderUnavailable
		d.Err = fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, safeErr("roles older than ROLES_MAX_AGE and the provider cannot be asked"))
		d.Session, d.Identity = nil, nil
		return d
	}
	if denial := rules.Check(d.Identity.subject()); denial != forward.NotDenied {
		d.Outcome, d.Reason, d.Denial = Forbidden, ReasonForbidden, denial
	}
	return d
}

// credential finds and checks the request's credential, filling d's
// Identity (and Session); rolesFresh reports that its roles are within
// ROLES_MAX_AGE. The one credential today is the session cookie: load it,
// check its absolute and idle limits, refresh its tokens if they are due
// (once, however many requests ask), re-read its roles if they are stale,
// stamp it as seen, and save it only when it changed: the
// auth.session.load step. (A bearer token, internal/bearer, will be judged
// here first when the request carries Authorization: Bearer: issue 15.)
func (rp *RelyingParty) credential(w http.ResponseWriter, r *http.Request, d *Decision) (rolesFresh bool, err error) {
	err = rp.step(r.Context(), "auth.session.load", func(ctx context.Context) (err error) {
		d.Session, rolesFresh, err = rp.checkSession(ctx, w, r)
		return err
	})
	if err != nil {
		d.Session = nil
		return false, err
	}
	d.Identity = rp.identities.of(d.Session)
	return rolesFresh, nil
}

// checkSession is decide's work up to the roles; rolesFresh reports that
// the session's roles are within RolesMaxAge (as of the request's start,
// so a re-read in this request counts as fresh).
func (rp *RelyingParty) checkSession(ctx context.Context, w http.ResponseWriter, r *http.Request) (s *session.Session, rolesFresh bool, err error) {
	now := rp.now()
	s, err = rp.loadSession(ctx, w, r, now)
	if err != nil {
		return nil, false, err
	}
	return s, !rp.rolesStale(s, now), nil
}

// loadSession loads, refreshes and saves the request's session.
func (rp *RelyingParty) loadSession(ctx context.Context, w http.ResponseWriter, r *http.Request, now time.Time) (*session.Session, error) {
	s, err := rp.sessions.Load(r)
	switch {
	case errors.Is(err, session.ErrUnavailable):
		return nil, fail(ReasonSessionStore, http.StatusServiceUnavailable, err)
	case err != nil:
		return nil, fail(ReasonNoSession, http.StatusSeeOther, err)
	}
	if s.Expired(now, rp.cfg.IdleTimeout) {
		_ = rp.sessions.Delete(w, r, s)
		return nil, fail(ReasonSessionExpired, http.StatusSeeOther, safeErr("session past its absolute or idle limit"))
	}
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("enduser.id", s.Subject))
	}
	changed := s.Reseal
	due := rp.refreshDue(s, now)
	if !due && rp.rolesStale(s, now) {
		switch err := rp.rereadRoles(ctx, s); {
		case err == nil:
			changed = true
		case isUnavailable(err) || errors.Is(err, errRefreshPending):
			// Kept as they are; decide refuses to check them (503).
		default:
			due = true // the access token no longer works: the refresh's answer decides
		}
	}
	if due {
		err := rp.refreshSession(ctx, s)
		switch reason, _ := failureOf(err); {
		case err == nil:
			changed = true
		case reason == ReasonSessionStore || reason == ReasonNoSession:
			return nil, err
		case reason == ReasonRefreshFailed && rp.rotationRace(err, now):
			// Another replica (cookie store) has rotated this refresh
			// token and is handing the browser the new cookie: serve
			// this request as it is and write nothing over that cookie.
			return s, nil
		case reason == ReasonRefreshFailed:
			rp.log.WarnContext(ctx, "token refresh refused; session ended", "reason", reason, "error", safeError(err))
			_ = rp.sessions.Delete(w, r, s)
			return nil, err
		case now.Unix() >= s.AccessExpiry:
			return nil, err // provider unreachable, access token expired: try again later
		}
		// Provider unreachable, access token still valid: served.
	}
	if rp.touchDue(s, now) {
		s.LastSeen = now.Unix()
		changed = true
	}
	if changed {
		s.Reseal = false
		if err := rp.sessions.Save(w, r, s); err != nil {
			if stored := storeFailure(err); stored != nil {
				return nil, stored
			}
			if errors.Is(err, session.ErrTooLarge) {
				return nil, fail(ReasonSessionTooLarge, http.StatusInternalServerError, err)
			}
			return nil, fail(ReasonSessionStore, http.StatusServiceUnavailable, err)
		}
	}
	return s, nil
}

// rotationRaceWindow is how long a refused refresh token is taken for one
// another replica has just rotated, when sessions live in cookies: a
// browser's concurrent requests carry the same cookie to several replicas,
// the first refresh wins, the provider refuses the rest, and the winner's
// new cookie reaches the browser with its answer. Within the window (from
// this process's first refusal of that token) such a request is served
// unchanged; a refusal that outlasts it was meant: the session ends.
const rotationRaceWindow = 10 * time.Second

// rotationRace reports whether err, a refused refresh, may be the losing
// side of such a race.
func (rp *RelyingParty) rotationRace(err error, now time.Time) bool {
	var denied *deniedError
	return !rp.serverSide && errors.As(err, &denied) && denied.race && now.Sub(denied.at) < rotationRaceWindow
}

// rolesStale: the session's roles were read longer than RolesMaxAge ago.
func (rp *RelyingParty) rolesStale(s *session.Session, now time.Time) bool {
	return now.Unix()-s.RolesAt >= int64(rp.cfg.RolesMaxAge/time.Second)
}

// rereadRoles reads userinfo (and with it the roles) again with the
// session's access token: the auth.roles.refresh step, once per session
// however many requests ask, each waiting at most the refresh budget.
func (rp *RelyingParty) rereadRoles(ctx context.Context, s *session.Session) error {
	return rp.step(ctx, "auth.roles.refresh", func(ctx context.Context) error {
		key := sha256.Sum256([]byte(s.AccessToken))
		ch := rp.rolesFlight.DoChan(string(key[:]), func() (any, error) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightLimit)
			defer cancel()
			relyingParty, err := rp.provider.RP()
			if err != nil {
				return nil, err
			}
			info, err := oidcrp.Userinfo[*oidc.UserInfo](ctx, s.AccessToken, s.TokenType, s.Subject, relyingParty)
			if err != nil {
				return nil, err
			}
			return storedUserinfo(info.Claims, claims.IDTokenClaims(s.IDToken))
		})
		wait := time.NewTimer(rp.cfg.RefreshBudget)
		defer wait.Stop()
		select {
		case res := <-ch:
			if res.Err != nil {
				return userinfoFailure(res.Err, http.StatusServiceUnavailable)
			}
			s.Userinfo, s.RolesAt = res.Val.([]byte), rp.now().Unix()
			return nil
		case <-wait.C:
			return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, errRefreshPending)
		case <-ctx.Done():
			return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, ctx.Err())
		}
	})
}

// storeFailure classifies the two store outcomes a refresh or save can meet
// besides success: the store is down (the session is kept for when it
// returns), or the session was ended elsewhere meanwhile (logout on another
// replica, back-channel logout). nil for any other error.
func storeFailure(err error) error {
	switch {
	case errors.Is(err, session.ErrUnavailable):
		return fail(ReasonSessionStore, http.StatusServiceUnavailable, err)
	case errors.Is(err, session.ErrNoSession):
		return fail(ReasonNoSession, http.StatusSeeOther, err)
	}
	return nil
}

// refreshDue: the access token expires within the refresh skew (sessions
// without a known expiry are never refreshed).
func (rp *RelyingParty) refreshDue(s *session.Session, now time.Time) bool {
	return s.AccessExpiry > 0 && now.Add(rp.cfg.RefreshSkew).Unix() >= s.AccessExpiry
}

// touchDue: the idle stamp is older than the touch interval. It is written
// back not on every request (a cookie rewrite per request) but often
// enough that an active user never meets the idle timeout: at most a
// minute, at most a tenth of the timeout, at least a second.
func (rp *RelyingParty) touchDue(s *session.Session, now time.Time) bool {
	d := time.Minute
	if t := rp.cfg.IdleTimeout / 10; t > 0 && t < d {
		d = t
	}
	return now.Unix()-s.LastSeen >= int64(max(d, time.Second)/time.Second)
}

// RequireSession lets requests with a valid session through, with the
// session in the context; others are sent to sign in (or get a friendly
// 503 while the store is down).
func (rp *RelyingParty) RequireSession(next http.Handler) http.Handler {
	return rp.require(forward.Rules{}, next)
}

// RequireRole is RequireSession for sessions whose ZITADEL project roles
// include one of roles; other signed-in users get a friendly 403. Role
// names are those a rule accepts (forward.ValidRoleName; config checks
// ADMIN_ROLE): anything else is a programming error.
func (rp *RelyingParty) RequireRole(roles ...string) func(http.Handler) http.Handler {
	rules, err := forward.AnyRole(roles...)
	if err != nil {
		panic("auth: RequireRole: " + err.Error())
	}
	return func(next http.Handler) http.Handler { return rp.require(rules, next) }
}

func (rp *RelyingParty) require(rules forward.Rules, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := rp.Decide(w, r, rules)
		switch d.Outcome {
		case Allowed:
			next.ServeHTTP(w, r.WithContext(WithSession(r.Context(), d.Session)))
		case Forbidden:
			rp.pages.Message(w, r, http.StatusForbidden, ReasonForbidden)
		case Unavailable:
			rp.respond(w, r, d.Err)
		default:
			redirectToSignIn(w, r, signInNotice(d.Reason))
		}
	})
}

// signInNotice is what the sign-in page tells someone sent back to it:
// nothing for a first visit, "your session has ended" otherwise.
func signInNotice(reason string) string {
	if reason == ReasonNoSession {
		return ""
	}
	return ReasonSessionExpired
}

// OptionalSession puts a valid session in the context when there is one
// (the landing page shows whether you are signed in) and never redirects,
// refreshes or saves.
func (rp *RelyingParty) OptionalSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := rp.sessions.Load(r)
		if err == nil && !s.Expired(rp.now(), rp.cfg.IdleTimeout) {
			r = r.WithContext(WithSession(r.Context(), s))
		}
		next.ServeHTTP(w, r)
	})
}

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

// redirectToSignIn sends the browser to sign in, keeping where it wanted
// to go (GET and HEAD only, same-site paths only) and why (notice).
func redirectToSignIn(w http.ResponseWriter, r *http.Request, notice string) {
	q := url.Values{}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if target := r.URL.RequestURI(); config.IsLocalPath(target) {
			q.Set("callbackUrl", target)
		}
	}
	if notice != "" {
		q.Set("error", notice)
	}
	u := "/auth/signin"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}
