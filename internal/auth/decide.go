package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/bearer"
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
	Throttled                      // a bearer token would cost an introspection call its client has no budget left for: try again later
	Abandoned                      // the client went away before the answer (its request's context ended): nothing to judge, nobody to tell
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
	case Throttled:
		return "throttled"
	case Abandoned:
		return "abandoned"
	}
	return "unknown"
}

// Credential is the kind of credential a decision judged, as spans name
// it (auth.credential).
type Credential string

const (
	// CredentialSession: the session cookie decided (also when there was
	// none: the request carried no bearer token).
	CredentialSession Credential = "session"
	// CredentialJWT and CredentialOpaque: the request's Authorization:
	// Bearer token decided, a JWT access token or an opaque one.
	CredentialJWT    Credential = Credential(bearer.CredentialJWT)
	CredentialOpaque Credential = Credential(bearer.CredentialOpaque)
	// CredentialBearer: an Authorization: Bearer header without a
	// well-formed token (empty, too long, characters outside a b64token).
	CredentialBearer Credential = "bearer"
)

// Decision is the answer for one request.
type Decision struct {
	Outcome Outcome
	// Credential is what decided: the session cookie, or the request's
	// bearer token. A bearer request is an API call: it is answered 401
	// with WWW-Authenticate, never sent to sign in.
	Credential Credential
	// CacheHit: a bearer token's verdict was reused (the introspection
	// answer, or the verification of the same JWT): no round trip to the
	// provider, no signature check.
	CacheHit bool
	// Identity is who the request is (Allowed, Forbidden), else nil.
	// Shared between requests: read it, never change it.
	Identity *Identity
	// Session is the session behind Identity when a session decided
	// (Allowed, Forbidden), else nil.
	Session *session.Session
	// ClientID is the application a bearer token was issued to (its
	// client_id or azp), "" for a session.
	ClientID string
	Denial   forward.Denial // which rule refused (Forbidden)
	Reason   string         // why it may not pass (Reason*, or a bearer.Reason); "" when allowed
	Err      error          // the cause, for the log (safeError); nil when allowed
	// RetryAfter is when the client may try again (Throttled).
	RetryAfter time.Duration
	token      string // the bearer token, for FORWARD_ACCESS_TOKEN
}

// Bearer reports whether the request's bearer token decided.
func (d Decision) Bearer() bool { return d.Credential != CredentialSession }

// AccessToken is the access token of the decision's credential ("" when
// there is none), for FORWARD_ACCESS_TOKEN: the session's, or the
// caller's own bearer token.
func (d Decision) AccessToken() string {
	if d.Session == nil {
		return d.token
	}
	return d.Session.AccessToken
}

// BearerVerifier judges the value of r's Authorization: Bearer header
// (internal/bearer's Verifier; r is whose budget an introspection call
// is charged to, bearer.Gate).
type BearerVerifier interface {
	VerifyFor(ctx context.Context, r *http.Request, authorization string) bearer.Result
}

// Decide is the one answer to "who is this request, and may it pass?",
// for every forward-auth endpoint, and (without bearer tokens: pages are
// for browsers) for Gatehouse's own pages (RequireSession, RequireRole),
// so none of them can disagree about the same cookie or token. It finds
// the request's credential and checks it: its Authorization: Bearer token
// when it has one (bearerCredential; cookies are then not looked at),
// else its session cookie (credential); then the rules (any valid
// credential when they are empty). The session's cookie is written on w
// when the session changed (refresh, roles re-read, idle stamp, re-seal)
// and cleared when it ended. It allocates nothing beyond the session
// lookup or the token's verification (BenchmarkDecision_Verify,
// internal/forwardauth).
//
// A session ends only on the provider's word (a refused refresh) or its
// own limits: while the provider cannot be asked, a request is served as
// long as the access token is still valid, and is Unavailable (503, the
// session kept) after that; rules on roles older than ROLES_MAX_AGE that
// cannot be read again are Unavailable too. A bearer token the provider
// cannot judge (nothing cached) is Unavailable as well, never a 401.
func (rp *RelyingParty) Decide(w http.ResponseWriter, r *http.Request, rules forward.Rules) Decision {
	return rp.decide(w, r, rules, true)
}

func (rp *RelyingParty) decide(w http.ResponseWriter, r *http.Request, rules forward.Rules, bearerOK bool) Decision {
	var d Decision
	var rolesFresh bool
	var err error
	if h := r.Header.Get("Authorization"); bearerOK && rp.bearer != nil && bearer.IsBearer(h) {
		// A bearer token's roles are as fresh as its verdict: a JWT's are those it carries, verified now; an introspection answer is at most INTROSPECTION_CACHE_TTL old.
		rolesFresh, err = true, rp.bearerCredential(r, h, &d)
	} else {
		d.Credential = CredentialSession
		rolesFresh, err = rp.credential(w, r, &d)
	}
	if err != nil {
		var status int
		d.Reason, status = failureOf(err)
		d.Err, d.Outcome = err, Unauthenticated
		switch {
		case r.Context().Err() != nil:
			// A client that hung up (or a proxy that dropped its auth
			// subrequest) cancels the store's and the provider's calls:
			// their errors say nothing about those services.
			d.Outcome, d.Reason = Abandoned, ReasonClientClosed
		case d.Reason == ReasonSessionStore || d.Reason == ReasonProviderUnavailable || (d.Bearer() && status == http.StatusServiceUnavailable):
			d.Outcome = Unavailable
		case d.Bearer() && status == http.StatusTooManyRequests:
			d.Outcome = Throttled
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
	if denial := rules.Check(d.Identity.RuleSubject()); denial != forward.NotDenied {
		d.Outcome, d.Reason, d.Denial = Forbidden, ReasonForbidden, denial
	}
	return d
}

// credential checks the request's session cookie, filling d's Identity
// and Session; rolesFresh reports that its roles are within ROLES_MAX_AGE.
// Load it, check its absolute and idle limits, refresh its tokens if they
// are due (once, however many requests ask), re-read its roles if they
// are stale, stamp it as seen, and save it only when it changed: the
// auth.session.load step.
func (rp *RelyingParty) credential(w http.ResponseWriter, r *http.Request, d *Decision) (rolesFresh bool, err error) {
	err = rp.checkStep(r.Context(), "auth.session.load", func(ctx context.Context) (err error) {
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

// bearerCredential judges the request's bearer token (authorization is
// its Authorization header), filling d's Identity: the auth.bearer.verify
// step. A bad token is a 401 (reason: the bearer.Reason), a provider that
// cannot be asked with nothing cached a 503.
func (rp *RelyingParty) bearerCredential(r *http.Request, authorization string, d *Decision) error {
	return rp.checkStep(r.Context(), "auth.bearer.verify", func(ctx context.Context) error {
		res := rp.bearer.VerifyFor(ctx, r, authorization)
		d.Credential, d.CacheHit = CredentialBearer, res.Cached
		if res.Credential != "" {
			d.Credential = Credential(res.Credential)
		}
		switch res.Outcome {
		case bearer.Allowed:
			d.Identity, d.ClientID = &res.Identity.Identity, res.Identity.ClientID
			d.token = strings.TrimLeft(authorization[len("Bearer "):], " ") // as bearer reads it
			if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
				span.SetAttributes(attribute.String("enduser.id", res.Identity.Subject))
			}
			return nil
		case bearer.Unavailable:
			return fail(string(res.Reason), http.StatusServiceUnavailable, bearerErr(res.Err))
		case bearer.Throttled:
			d.RetryAfter = res.RetryAfter
			return fail(string(res.Reason), http.StatusTooManyRequests, bearerErr(res.Err))
		}
		return fail(string(res.Reason), http.StatusUnauthorized, bearerErr(res.Err))
	})
}

// bearerErr is a bearer verdict's cause as a safe error: internal/bearer
// writes its causes from constants, never quoting a token.
func bearerErr(err error) error {
	if err == nil {
		return safeErr("bearer token refused")
	}
	return safeErr(err.Error())
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
	case err != nil && r.Context().Err() != nil: // the client left: the store did nothing wrong
		return nil, fail(ReasonClientClosed, StatusClientClosed, err)
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
			rp.log.WarnContext(ctx, LogRefreshEndedSession, "reason", reason, "error", safeError(err))
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

// LogRefreshEndedSession is the log message of a session ended because the
// provider refused its refresh: the soak (internal/loadtest) counts them.
const LogRefreshEndedSession = "token refresh refused; session ended"

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

// require guards one of Gatehouse's own pages. They take the session
// cookie only, never a bearer token: a page renders the session (its ID
// token, userinfo, sign-out with the ID token as hint), which a bearer
// token does not have, and the API of such data is ZITADEL's own (an API
// client calls ZITADEL's userinfo with its token). A request that carries
// a bearer token and no valid session is told so with a 401 rather than
// sent to an HTML sign-in page it cannot use.
func (rp *RelyingParty) require(rules forward.Rules, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := rp.decide(w, r, rules, false)
		switch {
		case d.Outcome == Allowed:
			next.ServeHTTP(w, r.WithContext(WithSession(r.Context(), d.Session)))
		case d.Outcome == Forbidden:
			rp.pages.Message(w, r, http.StatusForbidden, ReasonForbidden)
		case d.Outcome == Unavailable, d.Outcome == Abandoned:
			rp.respond(w, r, d.Err)
		case bearer.IsBearer(r.Header.Get("Authorization")):
			sessionRequired(w, r)
		default:
			redirectToSignIn(w, r, signInNotice(d.Reason))
		}
	})
}

// sessionRequired answers a bearer request to a page without a session:
// 401, the token being no credential here (RFC 6750 invalid_token: "invalid
// for other reasons").
func sessionRequired(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("WWW-Authenticate", `Bearer realm="gatehouse", error="invalid_token", error_description="this page takes a browser session, not a bearer token"`)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, `{"error":"session_required"}`+"\n")
	}
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
