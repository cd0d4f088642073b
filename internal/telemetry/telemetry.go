// Package telemetry sets up OpenTelemetry for Gatehouse from the standard
// OTEL_* environment variables: a tracer provider (only when an exporter is
// configured, so tracing costs next to nothing otherwise), a meter provider
// feeding a Prometheus handler and, when configured, OTLP; W3C trace
// context and baggage propagation; HTTP server and client instrumentation;
// the auth-step metrics; and a log handler that stamps trace and span IDs on
// every log line written inside a traced request.
//
// New (tests, embedding) touches none of OpenTelemetry's globals; Setup,
// the process's telemetry, installs them (see Setup).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// DefaultServiceName is service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
const DefaultServiceName = "gatehouse"

// Telemetry is the set of providers the rest of the service is wired with.
type Telemetry struct {
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	prop     propagation.TextMapPropagator
	tracing  bool // a real tracer provider is installed
	metering bool // a real meter provider is installed
	metrics  http.Handler
	auth     *AuthMetrics
	forward  *ForwardMetrics
	// decisions: the decision routes' http.server.request.duration, when
	// Telemetry keeps it itself (DecisionDurations); nil: the SDK does.
	decisions *DecisionDurations
	version   string
	shutdown  []func(context.Context) error
}

// Providers are explicit providers, for tests and embedding; nil members
// are off (no-op).
type Providers struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator // default: W3C trace context + baggage
	MetricsHandler http.Handler                  // what the admin /metrics serves; nil: none
	Version        string                        // instrumentation version
	// DecisionDurations, when set, keeps the decision routes'
	// http.server.request.duration instead of MeterProvider, as Setup's
	// default does; it must be a producer of every reader of MeterProvider.
	DecisionDurations *DecisionDurations
}

// New wires explicit providers (tests pass SDK providers with in-memory
// recorders). It never fails on valid providers.
func New(p Providers) (*Telemetry, error) {
	t := &Telemetry{
		tp: p.TracerProvider, mp: p.MeterProvider, prop: p.Propagator,
		tracing: p.TracerProvider != nil, metering: p.MeterProvider != nil,
		metrics: p.MetricsHandler, version: p.Version, decisions: p.DecisionDurations,
	}
	return t, t.init()
}

// MeterOptions are the meter provider's options besides its readers, as
// Setup makes it: the resource, the step histogram's buckets, and without
// tracing no exemplars. No span is ever sampled then, so the SDK's default
// trace-based filter could pick none; it would only cost every
// measurement a walk up the request's context, and every decision makes
// one (BenchmarkChain_Verify, internal/server, uses these options). An
// explicit OTEL_METRICS_EXEMPLAR_FILTER is left to the SDK.
func MeterOptions(res *resource.Resource, tracing bool) []sdkmetric.Option {
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), stepBuckets()}
	if !tracing && os.Getenv("OTEL_METRICS_EXEMPLAR_FILTER") == "" {
		opts = append(opts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	return opts
}

// Disabled is telemetry that records nothing; it still propagates incoming
// trace context so log lines of a request can carry the caller's trace ID.
func Disabled() *Telemetry {
	t, _ := New(Providers{}) // cannot fail with no-op providers
	return t
}

func (t *Telemetry) init() error {
	if t.tp == nil {
		t.tp = tracenoop.NewTracerProvider()
	}
	if t.mp == nil {
		t.mp = metricnoop.NewMeterProvider()
	}
	if t.prop == nil {
		t.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	am, err := NewAuthMetrics(t.mp, t.version)
	if err != nil {
		return fmt.Errorf("auth metrics: %w", err)
	}
	t.auth = am
	if t.forward, err = NewForwardMetrics(t.mp, t.version); err != nil {
		return fmt.Errorf("forward-auth metrics: %w", err)
	}
	return nil
}

// SetupOptions are what the environment cannot say.
type SetupOptions struct {
	ServiceVersion string
	// Prometheus builds the handler the admin listener serves on /metrics.
	Prometheus bool
	// Logger hears about export and instrumentation problems.
	Logger *slog.Logger
	// SpanPath, when set, rewrites the url.path of server spans whose
	// path it reports (true): paths that carry another app's request.
	SpanPath func(path string) (string, bool)
}

// Setup builds telemetry from the standard environment variables:
//
//   - traces: OTEL_TRACES_EXPORTER (otlp, console, none) through autoexport;
//     unset, traces are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT
//     or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, and are off (no-op
//     provider, no cost) otherwise. The protocol, headers, sampler
//     (OTEL_TRACES_SAMPLER) and batching (OTEL_BSP_*) are read by the SDK.
//   - metrics: the same rule with OTEL_METRICS_EXPORTER; "prometheus" means
//     the admin listener's /metrics, which exists whenever opts.Prometheus.
//   - resource: service.name defaults to gatehouse; OTEL_SERVICE_NAME and
//     OTEL_RESOURCE_ATTRIBUTES win.
//   - OTEL_SDK_DISABLED=true turns traces and OTLP metrics off.
//
// The SDK reads the process environment, so Setup does too. Call Shutdown
// to flush.
//
// Setup also installs the providers as OpenTelemetry's globals, for the
// libraries that only read those: zitadel/oidc opens its spans
// (VerifyIDToken, Userinfo, RefreshTokens, ...) on the global tracer
// provider, and they nest under the auth.* spans through the context. The
// library's tracer follows the first global provider set in the process,
// whenever it is set; the rest of Gatehouse is handed its providers.
func Setup(ctx context.Context, opts SetupOptions) (*Telemetry, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ServiceVersion(opts.ServiceVersion)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the environment wins
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	t := &Telemetry{version: opts.ServiceVersion}
	disabled := strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true")

	if !disabled && exporterConfigured("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: %w", os.Getenv("OTEL_TRACES_EXPORTER"), err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			tp := newTracerProvider(exp, res, opts.SpanPath)
			t.tp, t.tracing = tp, true
			t.shutdown = append(t.shutdown, tp.Shutdown)
		}
	}

	var readers []sdkmetric.Option
	if me := os.Getenv("OTEL_METRICS_EXPORTER"); !disabled && me != "prometheus" &&
		exporterConfigured("OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q: %w", me, err)
		}
		if !autoexport.IsNoneMetricReader(r) {
			readers = append(readers, sdkmetric.WithReader(r))
		}
	}
	if opts.Prometheus {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		promOpts := []otelprom.Option{otelprom.WithRegisterer(reg)}
		if len(readers) == 0 && !t.tracing { // DecisionDurations says why only then
			t.decisions = NewDecisionDurations()
			promOpts = append(promOpts, otelprom.WithProducer(t.decisions))
		}
		exp, err := otelprom.New(promOpts...)
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
		t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(append(readers, MeterOptions(res, t.tracing)...)...)
		t.mp, t.metering = mp, true
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}
	if err := t.init(); err != nil {
		_ = t.Shutdown(ctx)
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry: export or instrumentation problem", "error", err.Error())
	}))
	otel.SetTextMapPropagator(t.prop)
	if t.tracing {
		otel.SetTracerProvider(t.tp)
	}
	otel.SetMeterProvider(t.mp)
	return t, nil
}

// newTracerProvider batches spans to exp; spanPath (optional) rewrites
// the url.path of spans it reports before any exporter sees them.
func newTracerProvider(exp sdktrace.SpanExporter, res *resource.Resource, spanPath func(string) (string, bool)) *sdktrace.TracerProvider {
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if spanPath != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(pathRedactor{rewrite: spanPath}))
	}
	return sdktrace.NewTracerProvider(append(opts, sdktrace.WithBatcher(exp))...)
}

// exporterConfigured: the signal's exporter variable is set (even to none),
// or an OTLP endpoint is. The SDK's own default (OTLP to localhost:4318)
// would make every unconfigured instance log export errors forever.
func exporterConfigured(exporterVar, signalEndpointVar string) bool {
	return os.Getenv(exporterVar) != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv(signalEndpointVar) != ""
}

// Shutdown flushes pending spans and metrics and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	t.shutdown = nil
	return errors.Join(errs...)
}

// Instrumented reports whether anything records requests (spans or
// metrics); when not, callers can skip preparing what only they would read.
func (t *Telemetry) Instrumented() bool { return t.tracing || t.metering }

// Tracing reports whether spans are recorded and exported.
func (t *Telemetry) Tracing() bool { return t.tracing }

// TracerProvider is the provider for spans (no-op when tracing is off).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider is the provider for metrics (no-op when nothing reads them).
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Propagator is the W3C trace context + baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.prop }

// Tracer returns a tracer for an instrumentation scope (a package path).
func (t *Telemetry) Tracer(scope string) trace.Tracer {
	return t.tp.Tracer(scope, trace.WithInstrumentationVersion(t.version))
}

// MetricsHandler serves the Prometheus exposition; nil without Prometheus.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// AuthMetrics records the auth-step metrics; it implements auth.Observer.
func (t *Telemetry) AuthMetrics() *AuthMetrics { return t.auth }

// ForwardMetrics counts forward-auth decisions.
func (t *Telemetry) ForwardMetrics() *ForwardMetrics { return t.forward }

// Middleware wraps the public handler with the HTTP server metrics and,
// with tracing on, a server span per request. The span starts as "GET"
// and gets its route template ("GET /auth/callback") when the handler
// inside sets r.Pattern, as otelhttp documents; it never carries the
// query string. Requests for which skip returns true are neither traced
// nor measured. With tracing and metrics both off, only an incoming
// traceparent is kept.
//
// The metrics are recorded by httpmetrics.go in every mode, with
// otelhttp's instruments, scope, buckets and attributes
// (TestServerMetrics_MatchOtelhttp), so switching tracing on changes no
// series; otelhttp makes only the span. For a request durationOnly
// reports after the handler (a forward-auth decision: no request body,
// an empty or fixed answer, on every protected request) only
// http.server.request.duration is recorded, not the two body sizes
// (BenchmarkChain_Verify).
//
// serverName ("host:port" of the public URL) becomes server.address and
// server.port: left to the Host header, every made-up host a client sends
// would be a new metric series.
func (t *Telemetry) Middleware(next http.Handler, serverName string, skip, durationOnly func(*http.Request) bool) http.Handler {
	if !t.Instrumented() {
		return propagateOnly(next, t.prop)
	}
	h, measured := next, false
	if t.metering {
		sm, err := newServerMetrics(t.mp, t.prop, serverName, skip, durationOnly, !t.tracing, t.decisions)
		if err != nil { // an instrument the meter refused: report it, as otelhttp would
			otel.Handle(fmt.Errorf("http server metrics: %w", err))
		} else {
			h, measured = sm.handler(next), true
		}
	}
	if !t.tracing {
		if !measured {
			return propagateOnly(next, t.prop)
		}
		return h
	}
	opts := []otelhttp.Option{
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()), // the metrics are h's
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithServerName(serverName),
	}
	if skip != nil {
		opts = append(opts, otelhttp.WithFilter(func(r *http.Request) bool { return !skip(r) }))
	}
	return otelhttp.NewHandler(h, "gatehouse", opts...)
}

// propagateOnly keeps an incoming traceparent in the context when nothing
// is recorded, so log lines still lead to the caller's trace.
func propagateOnly(next http.Handler, prop propagation.TextMapPropagator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Traceparent") == "" {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))))
	})
}

// Transport wraps rt with a client span per call (named "POST
// /oauth/v2/token": the provider's endpoints are few and fixed) and the
// HTTP client metrics; the trace context travels in traceparent.
func (t *Telemetry) Transport(rt http.RoundTripper) http.RoundTripper {
	if !t.Instrumented() {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(t.mp),
		otelhttp.WithPropagators(t.prop),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
	)
}
