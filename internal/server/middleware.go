package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/unrolled/secure"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// securityHeaders sets the strict headers on every response, and
// Cache-Control: no-store on all but static files (pages show who is signed
// in, and auth responses must never be replayed). The CSP's form-action
// must name the provider's origin: browsers apply it to the redirect that
// follows the sign-in form and to the sign-out form's POST.
func securityHeaders(issuer string, https bool) func(http.Handler) http.Handler {
	return headerPolicy(issuer, https, nil)
}

// securityHeadersFor is securityHeaders for the public origin of
// callbackURL: https, or plain http (development), where the opener
// policy only applies on loopback names.
func securityHeadersFor(issuer, callbackURL string) func(http.Handler) http.Handler {
	https := strings.HasPrefix(callbackURL, "https://")
	return headerPolicyFor(issuer, https, https || loopbackOrigin(callbackURL), nil)
}

// securityHeaderSet is securityHeadersFor's headers, to set by hand: the
// decision endpoints set them on the answers a browser may see (a
// redirect, a refusal), not on the 200 only a proxy reads.
func securityHeaderSet(issuer, callbackURL string) func(http.Header, *http.Request) {
	https := strings.HasPrefix(callbackURL, "https://")
	return newHeaderSet(issuer, https, https || loopbackOrigin(callbackURL), nil).apply
}

// loopbackOrigin: u's host is localhost or a loopback address, which
// browsers trust like https.
func loopbackOrigin(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// probeHeaders are what a probe's answer needs: it is text/plain or JSON
// that no browser renders as a document (nosniff), never cached
// (no-store), and HSTS on an https site. The document headers (CSP,
// framing, referrer, permissions, opener policy) protect nothing there.
func probeHeaders(issuer string, https bool) func(http.Handler) http.Handler {
	return headerPolicy(issuer, https, []string{"X-Content-Type-Options"})
}

// headerPolicy applies the policy's headers (or only those named in only),
// HSTS over https, and no-store. unrolled/secure defines the policy; its
// output does not depend on the request, so it runs once at start-up.
// Each response gets its own copy of the value slices (one allocation for
// all of them): a handler that writes a header value in place changes
// only its own response.
//
// The opener policy goes out only where browsers apply it: on https, and
// on plain-http loopback development. On any other plain-http origin
// Chromium ignores it and says so as a console error on every page.
func headerPolicy(issuer string, https bool, only []string) func(http.Handler) http.Handler {
	return headerPolicyFor(issuer, https, https, only)
}

func headerPolicyFor(issuer string, https, opener bool, only []string) func(http.Handler) http.Handler {
	set := newHeaderSet(issuer, https, opener, only)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			set.apply(w.Header(), r)
			next.ServeHTTP(w, r)
		})
	}
}

// headerSet is a header policy computed once: its keys and values.
type headerSet struct {
	keys, values []string // values[i] is keys[i]'s; HSTS and Cache-Control last
	https        bool
}

func newHeaderSet(issuer string, https, opener bool, only []string) headerSet {
	formAction := "'self'"
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	policy := secure.New(secure.Options{
		ContentSecurityPolicy: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action " + formAction,
		FrameDeny:               true,
		ContentTypeNosniff:      true,
		ReferrerPolicy:          "same-origin", // a same-origin form POST keeps its Origin (browsers send "null" under no-referrer)
		PermissionsPolicy:       "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
		CrossOriginOpenerPolicy: map[bool]string{true: "same-origin"}[opener],
		STSSeconds:              63072000,
		STSIncludeSubdomains:    true,
		ForceSTSHeader:          true, // computed once; applied below only over https
	})
	computed := headerRecorder{}
	if err := policy.Process(computed, &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/"}, Header: http.Header{}}); err != nil {
		panic("security headers: " + err.Error()) // only fails for host or SSL checks, which are off
	}
	s := headerSet{https: https}
	for k, v := range computed {
		if k != "Strict-Transport-Security" && (only == nil || slices.Contains(only, k)) {
			s.keys, s.values = append(s.keys, k), append(s.values, strings.Join(v, ", "))
		}
	}
	s.keys, s.values = append(s.keys, "Cache-Control"), append(s.values, "no-store")
	s.keys, s.values = append(s.keys, "Strict-Transport-Security"), append(s.values, strings.Join(computed["Strict-Transport-Security"], ", "))
	return s
}

// apply sets the policy's headers on h for the request r.
func (s headerSet) apply(h http.Header, r *http.Request) {
	static := strings.HasPrefix(r.URL.Path, "/static/") // cacheable: the file server sets Cache-Control
	hsts := s.https || r.TLS != nil                     // TLS usually ends at the ingress; the configured URL tells us
	own := slices.Clone(s.values)
	for i, k := range s.keys {
		if (k == "Cache-Control" && static) || (k == "Strict-Transport-Security" && !hsts) {
			continue
		}
		h[k] = own[i : i+1 : i+1]
	}
}

// headerRecorder captures the headers unrolled/secure writes.
type headerRecorder http.Header

func (h headerRecorder) Header() http.Header         { return http.Header(h) }
func (h headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h headerRecorder) WriteHeader(int)             {}

// RouteTemplate is the matched route's template ("GET /auth/callback" uses
// "/auth/callback"), or "unmatched"; for handlers inside the router.
func RouteTemplate(r *http.Request) string {
	if route := mux.CurrentRoute(r); route != nil {
		if t, err := route.GetPathTemplate(); err == nil {
			return t
		}
	}
	return "unmatched"
}

// nameRoute is the router's middleware (mux runs it once a route has
// matched): it tells the request's record, kept by observe outside the
// router, the route template.
func nameRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := r.Context().Value(recordKey{}).(*requestRecord); ok {
			rec.route = RouteTemplate(r)
		}
		next.ServeHTTP(w, r)
	})
}

type recordKey struct{}

// requestRecord is what the access log writes about a request: status and
// size from its writer, the route template from nameRoute.
type requestRecord struct {
	http.ResponseWriter
	status int
	bytes  int
	route  string // "" until the router has matched
}

func (s *requestRecord) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *requestRecord) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (s *requestRecord) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// routeOf is the route template of r, named before the router (named) or
// by it, or "unmatched".
func routeOf(r *http.Request, named func(*http.Request) string) string {
	if rec, ok := r.Context().Value(recordKey{}).(*requestRecord); ok && rec.route != "" {
		return rec.route
	}
	if route := named(r); route != "" {
		return route
	}
	return "unmatched"
}

// observe is the outermost layer: the server span and HTTP metrics
// (telemetry), then the access log. The two are built together because
// the telemetry middleware names the span and the metrics' http.route from
// r.Pattern of the very request it hands on, which the access log sets
// once the request is done. The access log writes one line per request
// with the route template (never the raw URL: a callback URL carries a
// code and a state); static files and probes log at debug level.
//
// named gives the route template of requests answered before the router
// (the decision endpoints), "" for the others; those the router names
// (nameRoute, with mux.CurrentRoute) through the record in the request's
// context. The decisions skip that context and its copy of the request:
// they are every protected request of every app (BenchmarkChain_Verify).
func observe(log *slog.Logger, tel *telemetry.Telemetry, serverName string, named func(*http.Request) string, next http.Handler) http.Handler {
	instrumented := tel.Instrumented()
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &requestRecord{ResponseWriter: w, route: named(r)}
		if rec.route != "" {
			next.ServeHTTP(rec, r)
		} else {
			next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
		}
		logRequest(log, instrumented, r, rec, start)
	})
	return tel.Middleware(logged, serverName, untraced, isDecision)
}

// logRequest is observe's work after the handler: the route for the
// span and the metrics, and the access log line. It is a function of its
// own so that its frame is not on the stack while the handler runs: a
// decision must fit the stack a connection's goroutine is shrunk back to
// between requests (docs/PERFORMANCE.md, "The decision's stack").
//
//go:noinline
func logRequest(log *slog.Logger, instrumented bool, r *http.Request, rec *requestRecord, start time.Time) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	route := rec.route
	if instrumented && route != "" {
		r.Pattern = r.Method + " " + route
		// Metrics-only has no span to name: skip building the attribute.
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetAttributes(attribute.String("http.route", route))
		}
	}
	if route == "" {
		route = "unmatched"
	}
	level := slog.LevelInfo
	if untraced(r) || (rec.status == http.StatusOK && isDecisionRoute(route)) {
		// Probes, static files, and decisions that let a request
		// through (the proxy logs that request; the decision counter
		// counts it): one line per protected request would double
		// every app's log volume. Refusals stay at info.
		level = slog.LevelDebug
	}
	if !log.Enabled(r.Context(), level) {
		return // an allowed decision at the default level: build nothing
	}
	log.LogAttrs(r.Context(), level, "request",
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", rec.status),
		slog.Duration("duration", time.Since(start)),
		slog.Int("bytes", rec.bytes),
	)
}

// publicHostPort is the public origin's host:port (from the callback URL),
// the fixed server.address/server.port of the HTTP spans and metrics.
func publicHostPort(callbackURL string) string {
	u, err := url.Parse(callbackURL)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// untraced requests get no server span and no HTTP metrics: probes every
// few seconds and static files would drown the traces that matter.
func untraced(r *http.Request) bool {
	return isProbe(r.URL.Path) || strings.HasPrefix(r.URL.Path, "/static/")
}

func isProbe(path string) bool { return path == "/healthz" || path == "/readyz" }

// isDecision: a forward-auth decision request, once observe has named its
// route (r.Pattern "GET /auth/verify").
func isDecision(r *http.Request) bool {
	_, route, _ := strings.Cut(r.Pattern, " ")
	return isDecisionRoute(route)
}

// isDecisionRoute: the route template of a forward-auth decision endpoint.
func isDecisionRoute(route string) bool {
	return route == "/auth/verify" || strings.HasPrefix(route, "/auth/forward")
}

// recoverer turns a panic into a logged 500 instead of a dropped connection.
func recoverer(log *slog.Logger, named func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic in handler", "route", routeOf(r, named), "panic", v, "stack", string(debug.Stack()))
					http.Error(w, "Internal Server Error", http.StatusInternalServerError)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}
