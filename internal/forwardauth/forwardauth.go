// Package forwardauth serves the forward-auth decision endpoints, where
// the proxy in front of another app asks about each of its requests:
//
//	GET|HEAD /auth/verify          nginx auth_request, ingress-nginx auth-url
//	/auth/forward (any method)     Traefik ForwardAuth, Caddy forward_auth
//	/auth/forward/..., /auth/forward;rules/...
//	                               Envoy ext_authz (path_prefix), Envoy Gateway extAuth
//
// Each request takes one path: the adapter of the asking proxy reads the
// original request (internal/forward, believing only TRUSTED_PROXIES) and
// the route's rules; the one decision of the relying party (auth.Decide,
// the same as for Gatehouse's own pages) says who it is and whether it may
// pass; a responder turns the outcome into the proxy's language. The
// answers:
//
//	allowed          200, identity headers, the signed assertion (aud: the original host)
//	unauthenticated  /auth/verify: 401 (nginx turns it into the sign-in redirect);
//	                 /auth/forward: 302 to sign in for a browser navigation, else 401
//	forbidden        403, a friendly page from Gatehouse (JSON for scripts)
//	unavailable      503 with Retry-After (the session store is down)
//	throttled        429 with Retry-After (bearer tokens only: too many the provider refused)
//	abandoned        the asking request went away before the answer: 499 in the logs, nothing logged
//	misconfigured    400 (unusable proxy headers) or 500 (invalid rules), logged: never an allow
//	rejected         400: the same from a peer not in TRUSTED_PROXIES (no proxy's request; not logged)
//
// A request with Authorization: Bearer is an API call, judged by its token
// (internal/bearer) and never sent to sign in: a bad token is a 401 with
// WWW-Authenticate: Bearer error="invalid_token", a failed rule a 403 with
// error="insufficient_scope", an identity provider that cannot be asked
// (nothing cached) a 503; every refusal is JSON.
//
// docs/FORWARD-AUTH.md shows each proxy's configuration.
package forwardauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/assertion"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/ratelimit"
	"github.com/gatehouse/gatehouse/internal/redirect"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/trustedproxy"
)

// Decider is the one decision (auth.RelyingParty.Decide).
type Decider interface {
	Decide(w http.ResponseWriter, r *http.Request, rules forward.Rules) auth.Decision
}

// Pages renders the friendly pages (web.Pages) for a protected app's host.
type Pages interface {
	MessageAt(w http.ResponseWriter, r *http.Request, status int, code, origin string)
}

// Config is the endpoints' share of the configuration.
type Config struct {
	TrustedProxies []netip.Prefix // TRUSTED_PROXIES: whose proxy headers are believed
	// PublicOrigin is Gatehouse's public origin (scheme://host[:port]): the
	// sign-in redirect and the friendly pages point there.
	PublicOrigin string
	// Redirects is the return-URL policy (ALLOWED_REDIRECT_HOSTS): whether
	// a sign-in may come back to the original URL, and which hosts the
	// counter names.
	Redirects *redirect.Policy
	// ForwardAccessToken (FORWARD_ACCESS_TOKEN) sends the access token upstream.
	ForwardAccessToken bool
}

// Deps are the endpoints' collaborators.
type Deps struct {
	Config  Config
	Decider Decider
	Signer  *assertion.Signer
	Pages   Pages
	Logger  *slog.Logger
	Tracer  trace.Tracer              // optional: no spans
	Metrics *telemetry.ForwardMetrics // optional: no counter
	Now     func() time.Time          // optional: time.Now (for log throttling)
	// SecurityHeaders sets Gatehouse's security headers (CSP, framing,
	// no-store, ...) on an answer a browser may see: every answer but a
	// 200, which only the proxy reads. Optional.
	SecurityHeaders func(http.Header, *http.Request)
}

// Endpoints serves every decision path (Handler dispatches by path).
type Endpoints struct {
	cfg     Config
	decider Decider
	signer  *assertion.Signer
	pages   Pages
	log     *slog.Logger
	tracer  trace.Tracer
	tracing bool
	metrics *telemetry.ForwardMetrics
	hosts   *hostLabels
	warned  throttle
	harden  func(http.Header, *http.Request)
}

// New builds the endpoints.
func New(d Deps) *Endpoints {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tracer := d.Tracer
	_, noop := tracer.(tracenoop.Tracer)
	if tracer == nil {
		noop = true
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	harden := d.SecurityHeaders
	if harden == nil {
		harden = func(h http.Header, _ *http.Request) { h.Set("Cache-Control", "no-store") }
	}
	return &Endpoints{
		cfg: d.Config, decider: d.Decider, signer: d.Signer, pages: d.Pages, log: log,
		tracer: tracer, tracing: !noop, metrics: d.Metrics,
		hosts:  newHostLabels(d.Config.Redirects),
		warned: throttle{now: now, every: time.Minute}, harden: harden,
	}
}

// Outcome labels beyond auth.Outcome's: the endpoint could not ask at all,
// for a proxy in TRUSTED_PROXIES (misconfigured: its configuration is at
// fault) or for any other peer (rejected: a request no proxy sent, such
// as anyone's /auth/verify?x from the internet, which must not fire the
// operators' "a proxy is misconfigured" alert). A proxy's request about a
// host that is no host name (forward.ErrBadHost: the client's own Host
// header, through a catch-all route) is rejected too: the client's doing.
const (
	outcomeMisconfigured = "misconfigured"
	outcomeRejected      = "rejected"
)

// credentialNone labels a misconfigured request's count: no credential
// was judged.
const credentialNone auth.Credential = "none"

// ServeHTTP answers a decision request on any of the endpoints' paths
// (forward.AdapterOf); other paths get 404. Every answer but a 200 carries
// the security headers: proxies hand those to the browser.
func (e *Endpoints) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := forward.AdapterOf(r)
	if a == 0 || (a == forward.Verify && r.Method != http.MethodGet && r.Method != http.MethodHead) {
		e.notADecision(w, r, a)
		return
	}
	var span trace.Span
	if e.tracing {
		r, span = e.startSpan(r, a)
		defer span.End()
	}
	o, err := forward.Read(r, a, e.cfg.TrustedProxies)
	if o.Ignored != "" {
		e.warnIgnored(r, a, o)
	}
	if errors.Is(err, forward.ErrBadHost) {
		e.rejectHost(w, r, span, o)
		return
	}
	if err != nil {
		e.misconfigured(w, r, span, o, "bad_proxy_request", http.StatusBadRequest, err)
		return
	}
	rules, err := forward.RulesOf(r, a, o)
	if err != nil {
		e.misconfigured(w, r, span, o, "invalid_rules", http.StatusInternalServerError, err)
		return
	}
	d := e.decider.Decide(w, r, rules)
	e.record(span, o, d.Outcome.String(), reasonOf(d), d.Credential, rules)
	if span != nil && span.IsRecording() {
		e.recordCredential(span, d)
	}
	if d.Outcome == auth.Allowed {
		e.allow(w, r, o, d)
		return
	}
	e.answerRefusal(w, r, a, o, d)
}

// notADecision answers a request to a decision path that is not one: an
// unknown path (404) or a method /auth/verify does not take (405).
//
//go:noinline
func (e *Endpoints) notADecision(w http.ResponseWriter, r *http.Request, a forward.Adapter) {
	e.harden(w.Header(), r)
	if a == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
}

// startSpan starts the decision's auth.verify span.
//
//go:noinline
func (e *Endpoints) startSpan(r *http.Request, a forward.Adapter) (*http.Request, trace.Span) {
	ctx, span := e.tracer.Start(r.Context(), "auth.verify", trace.WithAttributes(attribute.String("auth.adapter", a.String())))
	return r.WithContext(ctx), span
}

// warnIgnored says (throttled) that a proxy header came from a peer
// outside TRUSTED_PROXIES.
//
//go:noinline
func (e *Endpoints) warnIgnored(r *http.Request, a forward.Adapter, o forward.Original) {
	e.warn(r.Context(), "ignored:"+o.Ignored, "forward-auth: proxy header from a peer not in TRUSTED_PROXIES ignored (is the proxy's address listed?)",
		slog.String("header", o.Ignored), slog.String("adapter", a.String()))
}

// answerRefusal answers every decision but Allowed. It and the three
// above are functions of their own, out of ServeHTTP's frame: a decision
// must fit the stack a connection's goroutine is shrunk back to between
// requests (docs/PERFORMANCE.md, "The decision's stack"), and never
// inlined, whatever the inliner's budget (TestDecision_FitsTheStack...).
//
//go:noinline
func (e *Endpoints) answerRefusal(w http.ResponseWriter, r *http.Request, a forward.Adapter, o forward.Original, d auth.Decision) {
	e.harden(w.Header(), r)
	switch {
	case d.Outcome == auth.Abandoned: // nobody to answer; counted, not logged
		w.WriteHeader(auth.StatusClientClosed)
	case d.Bearer():
		e.refuseBearer(w, r, d)
	case d.Outcome == auth.Forbidden:
		e.refuse(w, r, o, d, http.StatusForbidden, auth.ReasonForbidden)
	case d.Outcome == auth.Unavailable:
		e.unavailable(w, r, o, d)
	default:
		e.unauthenticated(w, r, a, o)
	}
}

// unavailable answers a session that could not be judged (503): its store
// cannot be reached, or the provider cannot be asked when the decision
// needs it (roles past ROLES_MAX_AGE for a role rule, or a refresh after
// the access token expired). The answer and the log name which, as the
// relying party's own pages do; the log says it once a minute per reason,
// not once per protected request of an outage.
func (e *Endpoints) unavailable(w http.ResponseWriter, r *http.Request, o forward.Original, d auth.Decision) {
	code, retry := d.Reason, "10"
	if code != auth.ReasonProviderUnavailable {
		code, retry = auth.ReasonSessionStore, "5"
	}
	cause := ""
	if d.Err != nil {
		cause = d.Err.Error()
	}
	e.throttled(r.Context(), slog.LevelError, "unavailable:"+code, "forward-auth: session not judged, a service it needs is unavailable",
		slog.String("reason", code), slog.String("error", cause))
	w.Header().Set("Retry-After", retry)
	e.refuse(w, r, o, d, http.StatusServiceUnavailable, code)
}

// recordCredential puts what decided on the span: auth.credential, and
// for an opaque token whether the introspection cache answered.
func (e *Endpoints) recordCredential(span trace.Span, d auth.Decision) {
	span.SetAttributes(attribute.String(telemetry.AttrCredential, string(d.Credential)))
	if d.Credential == auth.CredentialOpaque {
		span.SetAttributes(attribute.Bool(telemetry.AttrIntrospectionCached, d.CacheHit))
	}
}

// The answers to a refused bearer request (RFC 6750 §3).
const (
	challengeInvalidToken      = `Bearer error="invalid_token"`
	challengeInsufficientScope = `Bearer error="insufficient_scope"`
)

// refuseBearer answers an API call whose bearer token did not pass, in
// JSON and never with a redirect, whatever the request looks like: 401
// with a challenge for a bad token, 403 (insufficient_scope) for a failed
// rule, 503 when the identity provider could not be asked and nothing was
// cached, 429 when the token would need an introspection call and its
// client has sent too many tokens the provider refused (neither a 401: a
// client would throw its good token away).
func (e *Endpoints) refuseBearer(w http.ResponseWriter, r *http.Request, d auth.Decision) {
	h := w.Header()
	forward.ClearIdentity(h)
	status, code := http.StatusUnauthorized, "invalid_token"
	switch d.Outcome {
	case auth.Forbidden:
		status, code = http.StatusForbidden, auth.ReasonForbidden
		h.Set("WWW-Authenticate", challengeInsufficientScope)
	case auth.Unavailable:
		status, code = http.StatusServiceUnavailable, d.Reason
		e.throttled(r.Context(), slog.LevelError, "bearer:"+d.Reason, "forward-auth: bearer token not judged, the identity provider cannot be asked",
			slog.String("reason", d.Reason), slog.String("error", d.Err.Error()))
		h.Set("Retry-After", "5")
	case auth.Throttled:
		status, code = http.StatusTooManyRequests, d.Reason
		e.throttled(r.Context(), slog.LevelWarn, "bearer:"+d.Reason, "forward-auth: bearer token not judged, its client sent too many tokens the identity provider refused (RATE_LIMIT_PER_MINUTE)",
			slog.String("client.address", ratelimit.ClientOf(r, e.cfg.TrustedProxies).String()))
		h.Set("Retry-After", ratelimit.RetryAfter(d.RetryAfter))
	default:
		h.Set("WWW-Authenticate", challengeInvalidToken)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(jsonError(code, ""))
	}
}

// reasonOf is the failure reason spans carry: the rule that refused, or
// why there is no session.
func reasonOf(d auth.Decision) string {
	if d.Outcome == auth.Forbidden && d.Denial != forward.NotDenied {
		return d.Denial.String()
	}
	return d.Reason
}

// allow answers 200 with every identity header, the assertion for the
// original host when a trusted proxy named it, and the access token when
// FORWARD_ACCESS_TOKEN is on. A refreshed session's cookie is already on w.
func (e *Endpoints) allow(w http.ResponseWriter, r *http.Request, o forward.Original, d auth.Decision) {
	id := d.Identity
	var token string
	if o.Known && e.signer != nil {
		var err error
		token, err = e.signer.Assertion(assertion.Claims{Audience: o.Host, Subject: id.Subject, Email: id.Email, Roles: id.RoleNames,
			Client: d.ClientID})
		if err != nil { // no assertion rather than no access: the upstream that needs one refuses
			e.log.ErrorContext(r.Context(), "forward-auth: signing the assertion failed", "error", err.Error())
		}
	}
	forward.WriteIdentity(w.Header(), forward.Identity{
		Subject: id.Subject, Email: id.Email, PreferredUsername: id.PreferredUsername, Roles: id.RoleNames,
		AccessToken: d.AccessToken(),
	}, token, e.cfg.ForwardAccessToken)
	// net/http answers 200 when the handler returns.
}

// unauthenticated sends a browser navigation to sign in (302, on
// /auth/forward: Traefik, Caddy and Envoy hand it to the browser) and
// answers everything else 401, which single-page apps and API clients can
// handle; /auth/verify always answers 401, which nginx turns into the
// redirect (its error_page, or ingress-nginx's auth-signin).
func (e *Endpoints) unauthenticated(w http.ResponseWriter, r *http.Request, a forward.Adapter, o forward.Original) {
	h := w.Header()
	forward.ClearIdentity(h)
	signIn := e.signInURL(r, o)
	if a != forward.Verify && forward.IsNavigation(o.Method, r.Header) {
		h.Set("Location", signIn)
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	if r.Method != http.MethodHead {
		_, _ = w.Write(jsonError("unauthenticated", signIn))
	}
}

// refuse answers forbidden or unavailable: a friendly page from Gatehouse
// on the app's host for a browser navigation, a JSON error for scripts.
func (e *Endpoints) refuse(w http.ResponseWriter, r *http.Request, o forward.Original, d auth.Decision, status int, code string) {
	forward.ClearIdentity(w.Header())
	if forward.IsNavigation(o.Method, r.Header) {
		if d.Session != nil {
			r = r.WithContext(auth.WithSession(r.Context(), d.Session)) // the page names who is signed in
		}
		e.pages.MessageAt(w, r, status, code, e.cfg.PublicOrigin)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(jsonError(code, ""))
	}
}

// misconfigured answers a request the endpoint cannot decide on: the
// proxy's headers are unusable (400) or the route's rules are invalid
// (500). The operator learns why from the log; the request never passes.
func (e *Endpoints) misconfigured(w http.ResponseWriter, r *http.Request, span trace.Span, o forward.Original, reason string, status int, err error) {
	if !trustedproxy.FromTrusted(r, e.cfg.TrustedProxies) {
		e.record(span, o, outcomeRejected, reason, credentialNone, forward.Rules{})
		e.harden(w.Header(), r)
		forward.ClearIdentity(w.Header())
		http.Error(w, "Gatehouse: not a forward-auth request ("+reason+")", http.StatusBadRequest)
		return
	}
	e.record(span, o, outcomeMisconfigured, reason, credentialNone, forward.Rules{})
	// Keyed by what the operator configures, not by the error's text:
	// that quotes the query and headers a client chose, and a new text
	// per request would be a new log line per request.
	a := forward.AdapterOf(r).String()
	e.warn(r.Context(), reason+":"+a, "forward-auth: configuration error, request refused",
		slog.String("reason", reason), slog.String("adapter", a), slog.String("error", err.Error()))
	e.harden(w.Header(), r)
	forward.ClearIdentity(w.Header())
	http.Error(w, "Gatehouse: forward-auth configuration error ("+reason+"); the operator finds the cause in Gatehouse's log.", status)
}

// rejectHost answers a request about a host that is no host name or
// address: 400, counted as rejected, not logged (any client can send such
// a Host through a catch-all route), never an allow.
func (e *Endpoints) rejectHost(w http.ResponseWriter, r *http.Request, span trace.Span, o forward.Original) {
	e.record(span, o, outcomeRejected, "bad_host", credentialNone, forward.Rules{})
	e.harden(w.Header(), r)
	forward.ClearIdentity(w.Header())
	http.Error(w, "Gatehouse: the requested host is not a host name", http.StatusBadRequest)
}

// signInURL is Gatehouse's sign-in page with the original URL to return
// to, when a trusted proxy named it and the return-URL policy accepts it.
func (e *Endpoints) signInURL(r *http.Request, o forward.Original) string {
	u := e.cfg.PublicOrigin + "/auth/signin"
	if e.cfg.Redirects == nil {
		return u
	}
	back := o.URL()
	if back == "" { // none named, or none to send a browser back to: the client's doing, not the operator's
		return u
	}
	target, ok := e.cfg.Redirects.Resolve(back)
	if !ok {
		// Only the host is the operator's to fix; a URL of an allowed host
		// refused for its own sake (longer than a return URL may be) is the
		// client's.
		if !e.cfg.Redirects.HostAllowed(o.Scheme, o.Host) {
			e.warn(r.Context(), "return", "forward-auth: the protected host is not in ALLOWED_REDIRECT_HOSTS: its users land on ZITADEL_POST_LOGIN_URL after signing in",
				slog.String("host", o.Host))
		}
		return u
	}
	return u + "?rd=" + url.QueryEscape(target)
}

// record puts the outcome on the span and the counter.
func (e *Endpoints) record(span trace.Span, o forward.Original, outcome, reason string, credential auth.Credential, rules forward.Rules) {
	if e.metrics != nil {
		e.metrics.Decision(outcome, string(credential), e.hosts.of(o))
	}
	if span == nil || !span.IsRecording() {
		return
	}
	host := o.Host
	if !o.Known {
		host = unknownHost
	}
	span.SetAttributes(attribute.String(telemetry.AttrOutcome, outcome), attribute.String(telemetry.AttrProtectedHost, host))
	if !rules.Empty() {
		span.SetAttributes(attribute.String("auth.rules", rules.String()))
	}
	if reason != "" {
		span.SetAttributes(attribute.String("auth.failure.reason", reason))
	}
	if outcome == outcomeMisconfigured || outcome == auth.Unavailable.String() {
		span.SetStatus(codes.Error, reason)
	}
}

// warn logs at most once a minute per key: a misconfigured proxy would
// otherwise write a line per request of every user.
func (e *Endpoints) warn(ctx context.Context, key, msg string, attrs ...slog.Attr) {
	e.throttled(ctx, slog.LevelWarn, key, msg, attrs...)
}

// throttled logs at level at most once a minute per key.
func (e *Endpoints) throttled(ctx context.Context, level slog.Level, key, msg string, attrs ...slog.Attr) {
	if e.warned.allow(key) {
		e.log.LogAttrs(ctx, level, msg, attrs...)
	}
}

// jsonError is {"error":code} (a constant code) with the sign-in URL when
// there is one, for scripts that handle a 401 or 403 themselves.
func jsonError(code, signIn string) []byte {
	b := make([]byte, 0, 48+len(signIn))
	b = append(b, `{"error":"`...)
	b = append(b, code...)
	if signIn != "" {
		b = append(b, `","signin_url":"`...)
		b = appendJSONString(b, signIn)
	}
	return append(b, "\"}\n"...)
}

// appendJSONString appends s escaped for a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// throttle remembers when each key was last let through.
type throttle struct {
	now   func() time.Time
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

// maxThrottleKeys bounds the keys. They are the code's own (a reason,
// an adapter, a header name), so the bound is never reached; if it were,
// a new key waits for old ones to expire rather than wiping the map,
// which would let every known cause log again at once.
const maxThrottleKeys = 1024

func (t *throttle) allow(key string) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.last[key]; ok && now.Sub(last) < t.every {
		return false
	}
	if t.last == nil {
		t.last = make(map[string]time.Time)
	}
	if _, ok := t.last[key]; !ok && len(t.last) >= maxThrottleKeys {
		for k, last := range t.last {
			if now.Sub(last) >= t.every {
				delete(t.last, k)
			}
		}
		if len(t.last) >= maxThrottleKeys {
			return false
		}
	}
	t.last[key] = now
	return true
}
