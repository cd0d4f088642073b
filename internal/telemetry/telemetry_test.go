package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// otelVars are cleared for each Setup test, so the machine's environment
// cannot decide the outcome.
var otelVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
}

func TestSetup_TracingFollowsTheStandardVariables(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		tracing bool
	}{
		{"NothingConfiguredIsOff", nil, false},
		{"OTLPEndpointTurnsItOn", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"TracesEndpointTurnsItOn", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"GRPCProtocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true},
		{"ConsoleExporter", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"ExporterNoneWinsOverEndpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{"SDKDisabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range otelVars {
				t.Setenv(k, tc.env[k])
			}
			tel, err := Setup(context.Background(), SetupOptions{ServiceVersion: "test", Prometheus: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// Nothing listens at these endpoints: do not wait out the exporter's retries.
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_ = tel.Shutdown(ctx)
			})
			_, span := tel.Tracer("test").Start(context.Background(), "probe")
			defer span.End()
			if tel.Tracing() != tc.tracing || span.IsRecording() != tc.tracing {
				t.Fatalf("Tracing() = %v, span recording = %v; want %v", tel.Tracing(), span.IsRecording(), tc.tracing)
			}
			if tel.MetricsHandler() == nil {
				t.Fatal("no Prometheus handler")
			}
		})
	}
}

func TestSetup_RejectsUnknownExporterOrProtocol(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"Exporter": {"OTEL_TRACES_EXPORTER": "carrier-pigeon"},
		"Protocol": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
	} {
		t.Run(name, func(t *testing.T) {
			for _, k := range otelVars {
				t.Setenv(k, env[k])
			}
			if tel, err := Setup(context.Background(), SetupOptions{}); err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatal("Setup accepted a misconfiguration; the service would start without the telemetry asked for")
			}
		})
	}
}

func TestLogHandler_StampsTraceAndSpanIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var inside, outside map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &inside) != nil || json.Unmarshal([]byte(lines[1]), &outside) != nil {
		t.Fatalf("log output:\n%s", buf.String())
	}
	sc := span.SpanContext()
	if inside["trace_id"] != sc.TraceID().String() || inside["span_id"] != sc.SpanID().String() || inside["component"] != "test" {
		t.Errorf("line inside the span = %v, want trace_id %s span_id %s and the logger's attributes", inside, sc.TraceID(), sc.SpanID())
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("line outside any span has a trace_id: %v", outside)
	}
}

func TestMiddleware_NamesSpansFromPatternAndSkipsWhatItIsTold(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tel, err := New(Providers{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/auth/callback" {
			r.Pattern = "GET /auth/callback" // what the router's middleware does
		}
	}), "gatehouse.example:443", func(r *http.Request) bool { return r.URL.Path == "/healthz" }, nil)
	for _, target := range []string{"/auth/callback?code=secret-code&state=secret-state", "/healthz", "/nowhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, target, nil))
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), "secret") {
				t.Errorf("span %s attribute %s = %q carries the query string", s.Name(), kv.Key, kv.Value.String())
			}
		}
	}
	if strings.Join(names, ",") != "GET /auth/callback,GET" {
		t.Fatalf("spans = %q, want the callback named by its route, /healthz skipped, the unmatched path as bare GET", names)
	}
}

func TestMiddleware_TracingOffStillContinuesIncomingTraceForLogs(t *testing.T) {
	t.Parallel()
	metricsOnly, err := New(Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))})
	if err != nil {
		t.Fatal(err)
	}
	for name, tel := range map[string]*Telemetry{"AllOff": Disabled(), "MetricsOnly": metricsOnly} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var got trace.SpanContext
			h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = trace.SpanContextFromContext(r.Context())
			}), "gatehouse.example:443", nil, nil)
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0736aa-00f067aa0ba902b7-01")
			h.ServeHTTP(httptest.NewRecorder(), req)
			if got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0736aa" {
				t.Fatalf("trace in the handler's context = %v, want the caller's", got.TraceID())
			}
		})
	}
}

func TestAuthMetrics_CountSignInsAndActiveFlows(t *testing.T) {
	t.Parallel()
	mr := sdkmetric.NewManualReader()
	am, err := NewAuthMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr)), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		am.Step(ctx, "auth.signin", "success", "", time.Millisecond)
	}
	am.Step(ctx, "auth.signin", "failure", "provider_unavailable", time.Millisecond)
	am.Step(ctx, "auth.state.verify", "success", "", time.Millisecond)
	am.Step(ctx, "auth.callback", "success", "", 30*time.Millisecond)
	am.Step(ctx, "auth.callback", "failure", "state_mismatch", time.Millisecond)

	var rm metricdata.ResourceMetrics
	if err := mr.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var steps uint64
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				o, _ := dp.Attributes.Value("auth.outcome")
				r, _ := dp.Attributes.Value("auth.failure.reason")
				got[o.AsString()+"/"+r.AsString()] = dp.Value
			}
		case metricdata.Gauge[int64]:
			got["active"] = d.DataPoints[0].Value
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				steps += dp.Count
			}
		}
	}
	want := map[string]int64{"success/": 1, "failure/state_mismatch": 1, "failure/provider_unavailable": 1, "active": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if steps != 7 {
		t.Errorf("step duration histogram counted %d steps, want 7", steps)
	}
}

func TestFlowWindow_AbandonedFlowsExpire(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	f := newFlowWindow(10*time.Minute, func() time.Time { return now })
	f.start()
	f.start()
	now = now.Add(5 * time.Minute)
	f.start()
	f.end()
	if got := f.active(); got != 2 {
		t.Fatalf("active = %d, want 2", got)
	}
	now = now.Add(5*time.Minute + 10*time.Second) // the first two have expired
	if got := f.active(); got != 0 {
		t.Fatalf("active after the first flows expired = %d, want 0 (clamped)", got)
	}
	now = now.Add(10 * time.Minute)
	f.end() // a callback for a flow started elsewhere
	if got := f.active(); got != 0 {
		t.Fatalf("active = %d, want 0: never negative", got)
	}
}

// BenchmarkMiddleware measures what the telemetry middleware adds to a
// request. "off" is the default without an exporter or admin listener;
// "metrics" is the default with the admin listener (Prometheus) and no
// trace exporter; "tracing" records every span (exporter discarding).
func BenchmarkMiddleware(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Pattern = "GET /profile"
		_, _ = io.WriteString(w, "ok")
	})
	withMetrics := func() *Telemetry {
		t, _ := New(Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))})
		return t
	}
	withTracing := func() *Telemetry {
		t, _ := New(Providers{
			TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter())),
			MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
		})
		return t
	}
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", handler},
		{"off", Disabled().Middleware(handler, "gatehouse.example:443", nil, nil)},
		{"metrics", withMetrics().Middleware(handler, "gatehouse.example:443", nil, nil)},
		{"tracing", withTracing().Middleware(handler, "gatehouse.example:443", nil, nil)},
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
}

// TestPropagation_IncomingContextReachesTheProvider: a caller's traceparent
// and baggage continue through the server span to the calls Gatehouse
// makes, and the provider sees the client span as parent.
func TestPropagation_IncomingContextReachesTheProvider(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tel, err := New(Providers{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	var traceparent, baggage string
	// A stand-in for the provider that records the headers it gets: the
	// real one (internal/testenv) imports this package, so it cannot be
	// used here; the relying-party tests send real calls to it traced.
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceparent, baggage = r.Header.Get("Traceparent"), r.Header.Get("Baggage")
	}))
	t.Cleanup(provider.Close)
	client := &http.Client{Transport: tel.Transport(http.DefaultTransport)}
	h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, provider.URL+"/oauth/v2/keys", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}), "gatehouse.example:443", nil, nil)
	req := httptest.NewRequest(http.MethodGet, "/profile", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0736aa-00f067aa0ba902b7-01")
	req.Header.Set("Baggage", "tenant=acme")
	h.ServeHTTP(httptest.NewRecorder(), req)

	var clientSpan sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "GET /oauth/v2/keys" {
			clientSpan = s
		}
	}
	if clientSpan == nil {
		t.Fatal("no client span named after the provider endpoint")
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0736aa-" + clientSpan.SpanContext().SpanID().String() + "-01"
	if traceparent != want || baggage != "tenant=acme" {
		t.Fatalf("provider got traceparent %q baggage %q; want %q and the caller's baggage", traceparent, baggage, want)
	}
}

// TestMiddleware_HostHeaderCannotGrowMetricSeries: made-up Host headers
// all land in one series, under the configured public host.
func TestMiddleware_HostHeaderCannotGrowMetricSeries(t *testing.T) {
	t.Parallel()
	mr := sdkmetric.NewManualReader()
	tel, err := New(Providers{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr))})
	if err != nil {
		t.Fatal(err)
	}
	h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), "gatehouse.example:443", nil, nil)
	for _, host := range []string{"a.example", "b.example:8443", "c.example:1"} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Host = host
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	var rm metricdata.ResourceMetrics
	if err := mr.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.server.request.duration" {
				continue
			}
			dps := m.Data.(metricdata.Histogram[float64]).DataPoints
			addr, _ := dps[0].Attributes.Value("server.address")
			if len(dps) != 1 || addr.AsString() != "gatehouse.example" {
				t.Fatalf("%d series, server.address %q; want 1 series for gatehouse.example", len(dps), addr.AsString())
			}
			return
		}
	}
	t.Fatal("no http.server.request.duration recorded")
}
