package telemetry

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
)

// durationBuckets are the boundaries otelhttp v0.72.0 gives
// http.server.request.duration (internal/semconv/server.go); the body size
// histograms keep the SDK's defaults there, and so here.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// serverMetrics records the HTTP server metrics otelhttp records — same
// instruments, meter scope and attributes, so dashboards cannot tell —
// with or without a span (otelhttp's, outside, when tracing is on). otelhttp builds a span, wraps the writer with
// httpsnoop, copies the request and builds a fresh attribute set on every
// request; here the attribute sets are cached per distinct series.
// TestServerMetrics_MatchOtelhttp holds the two together.
// Needed for the forward-auth budget (metrics are on by default): BenchmarkServerMetrics.
type serverMetrics struct {
	duration httpconv.ServerRequestDuration
	reqSize  httpconv.ServerRequestBodySize
	respSize httpconv.ServerResponseBodySize
	prop     propagation.TextMapPropagator
	skip     func(*http.Request) bool
	// durationOnly: after the handler, whether to leave out the body sizes.
	durationOnly func(*http.Request) bool
	// extract: continue an incoming traceparent (with tracing on, otelhttp
	// outside has, and its server span must stay the context's).
	extract bool

	// server is the configured "host:port"; host and port are split once.
	// A port-less server name leaves the port to the Host header, and an
	// empty one the host too, as otelhttp does.
	server     string
	serverHost string
	serverPort int

	// options caches the record options per series; every member of
	// seriesKey is bounded (our route table, HTTP's methods, status codes
	// and versions), and maxCachedSeries bounds the map anyway.
	options sync.Map // seriesKey → []metric.RecordOption
	cached  atomic.Int64

	// decisions, when set, keeps the decision routes' durations instead
	// of the SDK (DecisionDurations says when Telemetry sets it).
	decisions *DecisionDurations
}

const maxCachedSeries = 1024

type seriesKey struct {
	method string // standardized: GET ... or _OTHER
	tls    bool
	proto  string // r.Proto as received, "HTTP/1.1"
	status int
	route  string
	host   string
	port   int
}

func newServerMetrics(mp metric.MeterProvider, prop propagation.TextMapPropagator, serverName string, skip, durationOnly func(*http.Request) bool, extract bool, decisions *DecisionDurations) (*serverMetrics, error) {
	m := mp.Meter(otelhttp.ScopeName, metric.WithInstrumentationVersion(otelhttp.Version))
	s := &serverMetrics{prop: prop, skip: skip, durationOnly: durationOnly, extract: extract, server: serverName, decisions: decisions}
	var err error
	if s.reqSize, err = httpconv.NewServerRequestBodySize(m); err != nil {
		return nil, err
	}
	if s.respSize, err = httpconv.NewServerResponseBodySize(m); err != nil {
		return nil, err
	}
	if s.duration, err = httpconv.NewServerRequestDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	if serverName != "" {
		s.serverHost, s.serverPort = splitHostPort(serverName)
	}
	return s, nil
}

func (s *serverMetrics) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if s.extract && r.Header.Get("Traceparent") != "" {
			r = r.WithContext(s.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		if s.skip != nil && s.skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		// One allocation holds both counters. It is not pooled: a handler
		// (or a goroutine it left behind) that kept the writer past its
		// return would then write into another user's response.
		mw := &meteredWriter{ResponseWriter: w, status: http.StatusOK}
		if r.Body != nil && r.Body != http.NoBody {
			// otelhttp counts what the handler read, not Content-Length.
			orig := r.Body
			mw.body.ReadCloser = orig
			r.Body = &mw.body
			defer func() { r.Body = orig }() // net/http checks the body's type afterwards
		}
		// r is what the access log inside sets Pattern on.
		next.ServeHTTP(mw, r)

		elapsed := time.Since(start)
		if s.decisions != nil && s.durationOnly != nil && s.durationOnly(r) {
			if p := s.decisions.point(s.keyOf(r, mw.status)); p != nil {
				p.record(float64(elapsed) / float64(time.Second))
				return
			}
		}
		ctx := r.Context()
		opts := s.optionsFor(r, mw.status)
		s.duration.Inst().Record(ctx, float64(elapsed)/float64(time.Second), opts...)
		if s.durationOnly == nil || !s.durationOnly(r) {
			s.reqSize.Inst().Record(ctx, mw.body.read, opts...)
			s.respSize.Inst().Record(ctx, mw.written, opts...)
		}
	})
}

func (s *serverMetrics) optionsFor(r *http.Request, status int) []metric.RecordOption {
	k := s.keyOf(r, status)
	if o, ok := s.options.Load(k); ok {
		return o.([]metric.RecordOption)
	}
	o := []metric.RecordOption{metric.WithAttributeSet(k.attributes())}
	if s.cached.Load() < maxCachedSeries {
		if _, loaded := s.options.LoadOrStore(k, o); !loaded {
			s.cached.Add(1)
		}
	}
	return o
}

// keyOf is r's series once the handler has answered with status.
func (s *serverMetrics) keyOf(r *http.Request, status int) seriesKey {
	k := seriesKey{
		method: standardMethod(r.Method),
		tls:    r.TLS != nil,
		proto:  r.Proto,
		status: status,
		route:  httpRoute(r.Pattern),
		host:   s.serverHost,
		port:   s.serverPort,
	}
	switch {
	case s.server == "":
		k.host, k.port = splitHostPort(r.Host)
	case k.port < 0:
		_, k.port = splitHostPort(r.Host)
	}
	return k
}

// attributes are otelhttp's server metric attributes (MetricAttributes in
// its internal/semconv/server.go): no http.request.method_original, no
// error.type, no peer or client address.
func (k seriesKey) attributes() attribute.Set {
	attrs := make([]attribute.KeyValue, 0, 8)
	scheme := "http"
	if k.tls {
		scheme = "https"
	}
	attrs = append(attrs,
		semconv.HTTPRequestMethodKey.String(k.method),
		semconv.URLScheme(scheme),
		semconv.ServerAddress(k.host))
	if p := requiredHTTPPort(k.tls, k.port); p > 0 {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	name, version := netProtocol(k.proto)
	if name != "" {
		attrs = append(attrs, semconv.NetworkProtocolName(name))
	}
	if version != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	if k.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(k.status))
	}
	if k.route != "" {
		attrs = append(attrs, semconv.HTTPRoute(k.route))
	}
	return attribute.NewSet(attrs...)
}

// standardMethod is otelhttp's standardizeHTTPMethod; the exact-match fast
// path spares strings.ToUpper for the usual request.
func standardMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodPatch, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	switch u := strings.ToUpper(m); u {
	case http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodPatch, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return u
	}
	return "_OTHER"
}

// httpRoute, splitHostPort, requiredHTTPPort and netProtocol follow
// otelhttp's internal/semconv/util.go (not importable: internal).

func httpRoute(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// splitHostPort returns port -1 when there is none or it is unparsable.
func splitHostPort(hostport string) (host string, port int) {
	port = -1
	if strings.HasPrefix(hostport, "[") {
		end := strings.LastIndexByte(hostport, ']')
		if end < 0 {
			return "", port
		}
		if !strings.Contains(hostport[end:], ":") {
			return hostport[1:end], port
		}
	} else if !strings.Contains(hostport, ":") {
		return hostport, port
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return host, port
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, port
	}
	return host, int(n)
}

func requiredHTTPPort(tls bool, port int) int {
	if port <= 0 || (tls && port == 443) || (!tls && port == 80) {
		return -1
	}
	return port
}

func netProtocol(proto string) (name, version string) {
	name, version, _ = strings.Cut(proto, "/")
	switch name {
	case "HTTP":
		name = "http"
	case "QUIC":
		name = "quic"
	case "SPDY":
		name = "spdy"
	default:
		name = strings.ToLower(name)
	}
	return name, version
}

// meteredWriter counts the status and body bytes as otelhttp's writer
// wrapper does: the first final status wins (1xx other than 101 do not
// count), 200 if the handler never says.
type meteredWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
	body        countingBody
}

func (w *meteredWriter) WriteHeader(code int) {
	if !w.wroteHeader && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		w.wroteHeader = true
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *meteredWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true // status stays what WriteHeader set, or 200
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// WriteString spares handlers that use io.WriteString a copy when the
// writer below (net/http's) takes strings.
func (w *meteredWriter) WriteString(s string) (int, error) {
	w.wroteHeader = true
	var n int
	var err error
	if sw, ok := w.ResponseWriter.(io.StringWriter); ok {
		n, err = sw.WriteString(s)
	} else {
		n, err = w.ResponseWriter.Write([]byte(s))
	}
	w.written += int64(n)
	return n, err
}

// Flush keeps streaming handlers that assert http.Flusher working.
func (w *meteredWriter) Flush() {
	w.wroteHeader = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *meteredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request body bytes the handler reads.
type countingBody struct {
	io.ReadCloser
	read int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	return n, err
}
