package server

import (
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
)

// securityHeaders sets the strict headers on every response. The CSP's
// form-action must name the provider's origin: browsers apply it to the
// redirect that follows the sign-in form and to the sign-out form's POST.
//
// unrolled/secure defines the policy. It builds and copies a header map on
// every request (14 allocations, half the budget of a protected request),
// and with these options its output does not depend on the request, so it
// runs once at start-up and the resulting values are shared by every
// response. Each slice has len == cap, so an Add elsewhere copies instead of
// writing into the shared array, and nothing writes header values in place.
func securityHeaders(issuer string, https bool) func(http.Handler) http.Handler {
	return headerPolicy(issuer, https, nil)
}

// probeHeaders are what a probe's answer needs: it is text/plain or JSON
// that no browser renders as a document (nosniff), never cached (noStore,
// applied with it), and HSTS on an https site. The document headers (CSP,
// framing, referrer, permissions, opener policy) protect nothing there, and
// writing them cost a sixth of a probe: 50 → 56–59 µs of CPU per /healthz
// in the binary, 13 % of its throughput.
func probeHeaders(issuer string, https bool) func(http.Handler) http.Handler {
	return headerPolicy(issuer, https, []string{"X-Content-Type-Options"})
}

// headerPolicy applies the policy's headers, or only those named in only.
func headerPolicy(issuer string, https bool, only []string) func(http.Handler) http.Handler {
	formAction := "'self'"
	if u, err := url.Parse(issuer); err == nil && u.Host != "" {
		formAction += " " + u.Scheme + "://" + u.Host
	}
	policy := secure.New(secure.Options{
		ContentSecurityPolicy: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action " + formAction,
		FrameDeny:               true,
		ContentTypeNosniff:      true,
		ReferrerPolicy:          "no-referrer",
		PermissionsPolicy:       "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
		CrossOriginOpenerPolicy: "same-origin",
		STSSeconds:              63072000,
		STSIncludeSubdomains:    true,
		ForceSTSHeader:          true, // computed once; applied below only over https
	})
	computed := headerRecorder{}
	if err := policy.Process(computed, &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/"}, Header: http.Header{}}); err != nil {
		panic("security headers: " + err.Error()) // only fails for host or SSL checks, which are off
	}
	sts := computed["Strict-Transport-Security"]
	delete(computed, "Strict-Transport-Security")
	type header struct {
		key   string
		value []string
	}
	headers := make([]header, 0, len(computed))
	for k, v := range computed {
		if only == nil || slices.Contains(only, k) {
			headers = append(headers, header{k, fixed(strings.Join(v, ", "))})
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			// TLS usually ends at the ingress; the configured URL tells us.
			if https || r.TLS != nil {
				h["Strict-Transport-Security"] = sts
			}
			for _, kv := range headers {
				h[kv.key] = kv.value
			}
			next.ServeHTTP(w, r)
		})
	}
}

// headerRecorder captures the headers unrolled/secure writes.
type headerRecorder http.Header

func (h headerRecorder) Header() http.Header         { return http.Header(h) }
func (h headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h headerRecorder) WriteHeader(int)             {}

// fixed is a header value shared by all responses (see securityHeaders).
func fixed(v string) []string { return []string{v} }

// noStore keeps every response except static files out of caches: pages
// show who is signed in, and auth responses must never be replayed.
func noStore(next http.Handler) http.Handler {
	noStore := fixed("no-store")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			w.Header()["Cache-Control"] = noStore
		}
		next.ServeHTTP(w, r)
	})
}

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

// nameRoutes makes every route's handler tell the access log its template.
// It wraps the handlers once, at start-up: mux.Use would build the
// wrapper on every request, and carrying the template out in the request
// context cost three allocations per request.
func nameRoutes(r *mux.Router) {
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		t, err := route.GetPathTemplate()
		if h := route.GetHandler(); err == nil && h != nil {
			route.Handler(named(t, h))
		}
		return nil
	})
}

func named(template string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sw := accessRecord(w); sw != nil {
			sw.route = template
		}
		next.ServeHTTP(w, r)
	})
}

// accessRecord is the access log's writer under w (nil outside accessLog).
func accessRecord(w http.ResponseWriter) *statusWriter {
	for {
		if sw, ok := w.(*statusWriter); ok {
			return sw
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
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

// statusWriter remembers the status, size and route for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
	route  string // set by the matched route's handler (nameRoutes)
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog writes one line per request with the route template (never
// the raw URL: a callback URL carries a code and a state). Static files log
// at debug level only.
//
// It must sit right inside the telemetry middleware: afterwards it names
// the request's server span after the route template, setting http.route
// on the span and r.Pattern ("GET /auth/callback"), which otelhttp (or the
// telemetry package's lean metrics-only middleware) reads
// for the span name and the metrics' http.route. Unmatched requests keep
// the bare method as span name. With telemetry off (instrumented false)
// nothing reads them: no allocation.
func accessLog(log *slog.Logger, instrumented bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			route := sw.route
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
			if isProbe(r.URL.Path) || strings.HasPrefix(r.URL.Path, "/static/") {
				level = slog.LevelDebug
			}
			log.LogAttrs(r.Context(), level, "request",
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.Int("status", sw.status),
				slog.Duration("duration", time.Since(start)),
				slog.Int("bytes", sw.bytes),
			)
		})
	}
}

func isProbe(path string) bool { return path == "/healthz" || path == "/readyz" }

// recoverer turns a panic into a logged 500 instead of a dropped connection.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					route := "unmatched" // the recoverer is outside the router: the route is on the access log's writer
					if sw := accessRecord(w); sw != nil && sw.route != "" {
						route = sw.route
					}
					log.ErrorContext(r.Context(), "panic in handler", "route", route, "panic", v, "stack", string(debug.Stack()))
					http.Error(w, "Internal Server Error", http.StatusInternalServerError)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}
