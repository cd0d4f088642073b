package telemetry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// meteredRequest is one request of TestServerMetrics_MatchOtelhttp and
// what the handler behind the middleware does with it.
type meteredRequest struct {
	name, method, target, body, proto, host string
	route                                   string // r.Pattern the router sets, "" unmatched
	read                                    int    // body bytes the handler reads; -1 all
	status                                  []int  // WriteHeader calls, in order
	write                                   string
	flush                                   bool
}

var meteredRequests = []meteredRequest{
	{name: "GetWithRoute", method: "GET", target: "/profile", route: "GET /profile", read: -1, write: "<html>profile</html>"},
	{name: "PostRedirect", method: "POST", target: "/auth/logout", body: "csrf=x", route: "POST /auth/logout", read: -1, status: []int{http.StatusSeeOther}},
	{name: "Unmatched404", method: "GET", target: "/nowhere?code=secret", read: -1, status: []int{http.StatusNotFound}, write: "404 page not found\n"},
	{name: "UnknownMethod", method: "PURGE", target: "/profile", read: -1, status: []int{http.StatusMethodNotAllowed}},
	{name: "LowerCaseMethod", method: "get", target: "/", route: "GET /{$}", read: -1, write: "hi"},
	{name: "BodyPartlyRead", method: "POST", target: "/auth/callback", body: strings.Repeat("a", 1000), route: "POST /auth/callback", read: 10, write: "ok"},
	{name: "BodyUnread", method: "PUT", target: "/x", body: "ignored", read: 0, status: []int{http.StatusNoContent}},
	{name: "ServerError", method: "GET", target: "/boom", route: "GET /boom", read: -1, status: []int{http.StatusInternalServerError}, write: "Internal Server Error\n"},
	{name: "InformationalThenCreated", method: "POST", target: "/things", route: "POST /things", read: -1, status: []int{http.StatusEarlyHints, http.StatusCreated}},
	{name: "SecondStatusIgnored", method: "GET", target: "/twice", read: -1, status: []int{http.StatusAccepted, http.StatusBadGateway}},
	{name: "FlushOnly", method: "GET", target: "/stream", route: "GET /stream", read: -1, flush: true},
	{name: "HTTPS", method: "GET", target: "https://gatehouse.example/profile", route: "GET /profile", read: -1, write: "x"},
	{name: "HTTP10", method: "GET", target: "/profile", proto: "HTTP/1.0", route: "GET /profile", read: -1, write: "x"},
	{name: "HTTP2", method: "GET", target: "/profile", proto: "HTTP/2.0", route: "GET /profile", read: -1, write: "x"},
	{name: "HostPatternRoute", method: "GET", target: "/h", route: "GET gatehouse.example/h", read: -1},
	{name: "MadeUpHost", method: "GET", target: "/profile", host: "evil.example:8080", route: "GET /profile", read: -1},
	{name: "Skipped", method: "GET", target: "/healthz", read: -1, write: "ok"},
	{name: "SkippedStatic", method: "GET", target: "/static/app.css", read: -1, write: "body{}"},
}

func (mr meteredRequest) handler(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case mr.read < 0:
			_, _ = io.Copy(io.Discard, r.Body)
		case mr.read > 0:
			_, _ = io.CopyN(io.Discard, r.Body, int64(mr.read))
		}
		for _, s := range mr.status {
			w.WriteHeader(s)
		}
		if mr.write != "" {
			_, _ = io.WriteString(w, mr.write)
		}
		if mr.flush {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("%s: flush: %v", mr.name, err)
			}
		}
		if mr.route != "" {
			r.Pattern = mr.route // what the access log does after the router
		}
	})
}

func (mr meteredRequest) request() *http.Request {
	var body io.Reader
	if mr.body != "" {
		body = strings.NewReader(mr.body)
	}
	r := httptest.NewRequest(mr.method, mr.target, body)
	if mr.proto != "" {
		r.Proto = mr.proto
		_, _ = fmt.Sscanf(mr.proto, "HTTP/%d.%d", &r.ProtoMajor, &r.ProtoMinor)
	}
	if mr.host != "" {
		r.Host = mr.host
	}
	r.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0736aa-00f067aa0ba902b7-01")
	return r
}

func skipProbesAndStatic(r *http.Request) bool {
	return r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/static/")
}

// TestServerMetrics_MatchOtelhttp: the lean metrics-only middleware and
// otelhttp.NewHandler, configured alike and served the same requests,
// produce the same instruments (scope, name, unit, description) and the
// same data points (attribute sets, counts, bucket bounds and, for the
// body sizes, sums). It fails as soon as we drift from otelhttp, for
// instance after an otelhttp upgrade changes its attributes.
func TestServerMetrics_MatchOtelhttp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode       string
		serverName string
	}{
		{"metrics", "gatehouse.example:443"}, {"metrics", "gatehouse.example:8443"}, {"metrics", "gatehouse.example"}, {"metrics", ""},
		{"tracing", "gatehouse.example:443"}, {"tracing", ""}, // otelhttp makes the span, the lean middleware the metrics
	} {
		serverName := tc.serverName
		t.Run(tc.mode+"_"+strings.ReplaceAll(serverName+"_", ":", "_"), func(t *testing.T) {
			t.Parallel()
			leanReader, otelReader := sdkmetric.NewManualReader(), sdkmetric.NewManualReader()
			p := Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(leanReader))}
			if tc.mode == "tracing" {
				p.TracerProvider = sdktrace.NewTracerProvider()
			}
			tel, err := New(p)
			if err != nil {
				t.Fatal(err)
			}
			otelOpts := []otelhttp.Option{
				otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()),
				otelhttp.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(otelReader))),
				otelhttp.WithPropagators(tel.Propagator()),
				otelhttp.WithServerName(serverName),
				otelhttp.WithFilter(func(r *http.Request) bool { return !skipProbesAndStatic(r) }),
			}
			for _, mr := range meteredRequests {
				lean := tel.Middleware(mr.handler(t), serverName, skipProbesAndStatic, nil)
				reference := otelhttp.NewHandler(mr.handler(t), "gatehouse", otelOpts...)
				for _, h := range []http.Handler{lean, reference} {
					req := mr.request()
					body := req.Body
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if req.Body != body {
						t.Errorf("%s: the request's body was not restored after the handler", mr.name)
					}
				}
			}
			got, want := collectHTTPMetrics(t, leanReader), collectHTTPMetrics(t, otelReader)
			if len(want) == 0 {
				t.Fatal("otelhttp recorded nothing: the comparison would be empty")
			}
			for _, k := range sortedKeys(want) {
				if got[k] != want[k] {
					t.Errorf("otelhttp: %s = %s\n              lean: %s", k, want[k], orNone(got[k]))
				}
			}
			for _, k := range sortedKeys(got) {
				if _, ok := want[k]; !ok {
					t.Errorf("lean records %s = %s; otelhttp does not", k, got[k])
				}
			}
		})
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// collectHTTPMetrics flattens what a reader holds to "instrument |
// attributes" → "count, sum, bounds", leaving out the durations' sums
// (wall time differs between two runs).
func collectHTTPMetrics(t *testing.T, r sdkmetric.Reader) map[string]string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !strings.HasPrefix(m.Name, "http.server.") {
				continue
			}
			inst := fmt.Sprintf("%s@%s %s [%s] %q", sm.Scope.Name, sm.Scope.Version, m.Name, m.Unit, m.Description)
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[inst+" | "+attrString(dp.Attributes)] = fmt.Sprintf("count %d, bounds %v", dp.Count, dp.Bounds)
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					out[inst+" | "+attrString(dp.Attributes)] = fmt.Sprintf("count %d, sum %d, bounds %v", dp.Count, dp.Sum, dp.Bounds)
				}
			default:
				out[inst] = fmt.Sprintf("unexpected data %T", d)
			}
		}
	}
	return out
}

func attrString(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, fmt.Sprintf("%s=%s(%s)", kv.Key, kv.Value.String(), kv.Value.Type()))
	}
	return strings.Join(parts, " ")
}

// TestServerMetrics_KeepsResponseControllerAndTraceContext: behind the
// lean middleware, a handler on a real server can still set deadlines and
// flush through http.ResponseController, and sees the caller's trace.
func TestServerMetrics_KeepsResponseControllerAndTraceContext(t *testing.T) {
	t.Parallel()
	mr := sdkmetric.NewManualReader()
	tel, err := New(Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr))})
	if err != nil {
		t.Fatal(err)
	}
	var traceID string
	srv := httptest.NewServer(tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceID = trace.SpanContextFromContext(r.Context()).TraceID().String()
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline through the middleware: %v", err)
		}
		_, _ = io.WriteString(w, "part")
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush through the middleware: %v", err)
		}
	}), "gatehouse.example:443", nil, nil))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0736aa-00f067aa0ba902b7-01")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "part" || traceID != "4bf92f3577b34da6a3ce929d0e0736aa" {
		t.Fatalf("body %q, trace %q; want the handler's output and the caller's trace", b, traceID)
	}
}

// TestMiddleware_DecisionsRecordOnlyTheirDuration: for a request the
// durationOnly predicate names (a forward-auth decision), the middleware
// records http.server.request.duration and neither body size; other
// requests get all three. The same with tracing on, where the span's
// parent is still the caller's.
func TestMiddleware_DecisionsRecordOnlyTheirDuration(t *testing.T) {
	t.Parallel()
	const caller = "00-4bf92f3577b34da6a3ce929d0e0736aa-00f067aa0ba902b7-01"
	for _, mode := range []string{"metrics", "tracing"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			reader := sdkmetric.NewManualReader()
			spans := tracetest.NewSpanRecorder()
			p := Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))}
			if mode == "tracing" {
				p.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			}
			tel, err := New(p)
			if err != nil {
				t.Fatal(err)
			}
			decision := func(r *http.Request) bool { return r.Pattern == "GET /auth/verify" }
			h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, step := tel.Tracer("test").Start(r.Context(), "auth.step")
				step.End()
				r.Pattern = "GET " + r.URL.Path
				_, _ = io.WriteString(w, "answer")
			}), "gatehouse.example:443", nil, decision)
			for _, path := range []string{"/auth/verify", "/profile"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.Header.Set("Traceparent", caller)
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
			got := map[string]bool{}
			for k := range collectHTTPMetrics(t, reader) {
				name := strings.Fields(k)[1]
				route := k[strings.Index(k, "http.route=")+len("http.route="):]
				route = route[:strings.Index(route, "(")]
				got[name+" "+route] = true
			}
			for _, want := range []struct {
				series string
				there  bool
			}{
				{"http.server.request.duration /auth/verify", true},
				{"http.server.request.body.size /auth/verify", false},
				{"http.server.response.body.size /auth/verify", false},
				{"http.server.request.duration /profile", true},
				{"http.server.request.body.size /profile", true},
				{"http.server.response.body.size /profile", true},
			} {
				if got[want.series] != want.there {
					t.Errorf("%s recorded: %v, want %v (all: %v)", want.series, got[want.series], want.there, got)
				}
			}
			if mode != "tracing" {
				return
			}
			// Per request: the step (ended first) under the server span,
			// the server span under the caller's.
			ended := spans.Ended()
			if len(ended) != 4 {
				t.Fatalf("%d spans, want a step and a server span per request", len(ended))
			}
			for i := 0; i < len(ended); i += 2 {
				step, server := ended[i], ended[i+1]
				if server.Parent().SpanID().String() != "00f067aa0ba902b7" || server.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0736aa" {
					t.Errorf("server span %q: parent %s in trace %s, want the caller's span", server.Name(), server.Parent().SpanID(), server.SpanContext().TraceID())
				}
				if step.Parent().SpanID() != server.SpanContext().SpanID() {
					t.Errorf("step span: parent %s, want the server span %s", step.Parent().SpanID(), server.SpanContext().SpanID())
				}
			}
		})
	}
}

// BenchmarkServerMetrics is the lean metrics-only middleware against
// otelhttp with the same meter provider and a no-op tracer (what
// Middleware built for this mode before), around a handler that sets a
// route and writes a few bytes. The lean one allocates only its writer.
func BenchmarkServerMetrics(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Pattern = "GET /profile"
		_, _ = io.WriteString(w, "ok")
	})
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tel, _ := New(Providers{MeterProvider: mp})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"lean", tel.Middleware(handler, "gatehouse.example:443", skipProbesAndStatic, nil)},
		{"otelhttp", otelhttp.NewHandler(handler, "gatehouse",
			otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelhttp.WithMeterProvider(mp),
			otelhttp.WithPropagators(propagation.TraceContext{}),
			otelhttp.WithServerName("gatehouse.example:443"),
			otelhttp.WithFilter(func(r *http.Request) bool { return !skipProbesAndStatic(r) }))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/profile", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				w.Body.Reset()
				bc.h.ServeHTTP(w, req)
			}
		})
	}
	// A decision: the duration only, in the SDK or kept by Gatehouse
	// (DecisionDurations), as Setup chooses.
	decision := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Pattern = "GET /auth/verify"
		w.WriteHeader(http.StatusOK)
	})
	isDecision := func(r *http.Request) bool { return r.Pattern == "GET /auth/verify" }
	kept, _ := New(Providers{MeterProvider: mp})
	kept.decisions = NewDecisionDurations()
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"decision/sdk", tel.Middleware(decision, "gatehouse.example:443", skipProbesAndStatic, isDecision)},
		{"decision/kept", kept.Middleware(decision, "gatehouse.example:443", skipProbesAndStatic, isDecision)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/auth/verify", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(w, req)
			}
		})
	}
}

// TestSetup_PrometheusShowsLeanHTTPMetrics: in the production default
// (admin /metrics, no trace exporter) the exposition carries the HTTP
// server series under otelhttp's scope, with the route, as dashboards
// built on otelhttp expect.
func TestSetup_PrometheusShowsLeanHTTPMetrics(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
	tel, err := Setup(context.Background(), SetupOptions{ServiceVersion: "test", Prometheus: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	if tel.Tracing() {
		t.Fatal("tracing on without an exporter configured")
	}
	h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusSeeOther)
		r.Pattern = "GET /auth/callback"
	}), "gatehouse.example:443", nil, nil)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/auth/callback?code=c&state=s", nil))

	w := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var series string
	for line := range strings.SplitSeq(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "http_server_request_duration_seconds_count{") {
			series = line
		}
	}
	for _, want := range []string{`http_route="/auth/callback"`, `http_response_status_code="303"`, `http_request_method="GET"`,
		`otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"`, `server_address="gatehouse.example"`} {
		if !strings.Contains(series, want) {
			t.Errorf("http_server_request_duration_seconds_count series %q lacks %s", series, want)
		}
	}
}
