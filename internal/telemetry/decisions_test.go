package telemetry

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
)

var decisionKey = seriesKey{method: "GET", proto: "HTTP/1.1", status: 200, route: "/auth/verify", host: "gatehouse.example", port: 443}

// TestDecisionDurations_MatchTheSDKHistogram: the same durations give the
// same data point as the SDK's http.server.request.duration (as
// serverMetrics builds it): metric, scope, attributes, bounds, bucket
// counts (values on a boundary included), count, sum, min and max.
func TestDecisionDurations_MatchTheSDKHistogram(t *testing.T) {
	t.Parallel()
	values := []float64{0, 0.0001, 0.005, 0.0050001, 0.01, 0.3, 0.75, 2.5, 9.9, 10, 11, 0.005, 0.0021}

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m := mp.Meter(otelhttp.ScopeName, metric.WithInstrumentationVersion(otelhttp.Version))
	h, err := httpconv.NewServerRequestDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		t.Fatal(err)
	}
	d := NewDecisionDurations()
	p := d.point(decisionKey)
	for _, v := range values {
		h.Inst().Record(context.Background(), v, metric.WithAttributeSet(decisionKey.attributes()))
		p.record(v)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	ours, err := d.Produce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 || len(ours) != 1 {
		t.Fatalf("scopes: SDK %d, ours %d; want 1 each", len(rm.ScopeMetrics), len(ours))
	}
	sdkScope, ourScope := rm.ScopeMetrics[0], ours[0]
	if sdkScope.Scope != ourScope.Scope {
		t.Errorf("scope %+v, SDK's %+v", ourScope.Scope, sdkScope.Scope)
	}
	sm, om := sdkScope.Metrics[0], ourScope.Metrics[0]
	if om.Name != sm.Name || om.Description != sm.Description || om.Unit != sm.Unit {
		t.Errorf("metric %q %q %q, SDK's %q %q %q", om.Name, om.Description, om.Unit, sm.Name, sm.Description, sm.Unit)
	}
	sh, oh := sm.Data.(metricdata.Histogram[float64]), om.Data.(metricdata.Histogram[float64])
	if oh.Temporality != sh.Temporality {
		t.Errorf("temporality %v, SDK's %v", oh.Temporality, sh.Temporality)
	}
	sp, op := sh.DataPoints[0], oh.DataPoints[0]
	if !op.Attributes.Equals(&sp.Attributes) {
		t.Errorf("attributes %v, SDK's %v", op.Attributes.ToSlice(), sp.Attributes.ToSlice())
	}
	if op.Count != sp.Count || math.Abs(op.Sum-sp.Sum) > 1e-12 {
		t.Errorf("count %d sum %v, SDK's %d %v", op.Count, op.Sum, sp.Count, sp.Sum)
	}
	if !slices.Equal(op.Bounds, sp.Bounds) || !slices.Equal(op.BucketCounts, sp.BucketCounts) {
		t.Errorf("buckets %v %v, SDK's %v %v", op.Bounds, op.BucketCounts, sp.Bounds, sp.BucketCounts)
	}
	if op.Min != sp.Min || op.Max != sp.Max {
		t.Errorf("min %v max %v, SDK's %v %v", op.Min, op.Max, sp.Min, sp.Max)
	}
}

// TestDecisionDurations_ConcurrentDecisionsAllCount: no measurement is lost
// to a race on the sum or the extremes.
func TestDecisionDurations_ConcurrentDecisionsAllCount(t *testing.T) {
	t.Parallel()
	d := NewDecisionDurations()
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				d.point(decisionKey).record(float64(w*each+i+1) / 1e6) // 1 µs to 16 ms, all distinct
			}
		})
	}
	wg.Wait()
	out, _ := d.Produce(context.Background())
	dp := out[0].Metrics[0].Data.(metricdata.Histogram[float64]).DataPoints[0]
	n := workers * each
	if dp.Count != uint64(n) {
		t.Errorf("count %d, want %d", dp.Count, n)
	}
	if want := float64(n) * float64(n+1) / 2 / 1e6; math.Abs(dp.Sum-want) > 1e-6 {
		t.Errorf("sum %v, want %v", dp.Sum, want)
	}
	if lo, _ := dp.Min.Value(); lo != 1e-6 {
		t.Errorf("min %v, want 1e-6", lo)
	}
	if hi, _ := dp.Max.Value(); hi != float64(n)/1e6 {
		t.Errorf("max %v, want %v", hi, float64(n)/1e6)
	}
}

// TestDecisionDurations_ASeriesStaysWhereItStarted: past maxCachedSeries a
// new series is the SDK's (nil), and one already kept stays kept, so no
// series is ever exported by both.
func TestDecisionDurations_ASeriesStaysWhereItStarted(t *testing.T) {
	t.Parallel()
	d := NewDecisionDurations()
	first := d.point(decisionKey)
	for i := range maxCachedSeries - 1 {
		k := decisionKey
		k.port = 10000 + i
		if d.point(k) == nil {
			t.Fatalf("series %d refused below the bound", i+2)
		}
	}
	k := decisionKey
	k.status = 401
	if d.point(k) != nil {
		t.Error("a series past the bound was kept")
	}
	if d.point(decisionKey) != first {
		t.Error("a kept series moved")
	}
	if out, _ := d.Produce(context.Background()); out != nil {
		t.Errorf("series without a measurement were produced: %d scopes", len(out))
	}
}

// TestSetup_DecisionDurationsOnlyWhereTheyMatchTheSDK: the production
// default (Prometheus, no traces, no OTLP metrics) keeps the decisions'
// durations itself and /metrics shows them in http.server.request.duration
// next to the other routes'; with traces (exemplars) or an OTLP reader
// (its own temporality) the SDK keeps them.
func TestSetup_DecisionDurationsOnlyWhereTheyMatchTheSDK(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		kept bool
	}{
		{"prometheus alone", nil, true},
		{"traces on", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, false},
		{"otlp metrics too", map[string]string{"OTEL_METRICS_EXPORTER": "console"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range otelVars {
				t.Setenv(k, "")
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			tel, err := Setup(context.Background(), SetupOptions{ServiceVersion: "test", Prometheus: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			if kept := tel.decisions != nil; kept != c.kept {
				t.Fatalf("decision durations kept by Gatehouse = %v, want %v", kept, c.kept)
			}
			h := tel.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Pattern = "GET " + r.URL.Path
				if r.URL.Path == "/auth/verify" {
					w.WriteHeader(http.StatusUnauthorized)
				}
			}), "gatehouse.example:443", nil, func(r *http.Request) bool { return r.Pattern == "GET /auth/verify" })
			for range 3 {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/auth/verify", nil))
			}
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/profile", nil))

			w := httptest.NewRecorder()
			tel.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if w.Code != http.StatusOK {
				t.Fatalf("/metrics answered %d: %s", w.Code, w.Body)
			}
			counts := map[string]string{}
			for line := range strings.SplitSeq(w.Body.String(), "\n") {
				if !strings.HasPrefix(line, "http_server_request_duration_seconds_count{") {
					continue
				}
				for _, route := range []string{"/auth/verify", "/profile"} {
					if strings.Contains(line, `http_route="`+route+`"`) {
						counts[route] = line[strings.LastIndexByte(line, ' ')+1:]
						for _, want := range []string{`http_request_method="GET"`, `server_address="gatehouse.example"`,
							`otel_scope_name="go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"`} {
							if !strings.Contains(line, want) {
								t.Errorf("%s series %q lacks %s", route, line, want)
							}
						}
					}
				}
			}
			if counts["/auth/verify"] != "3" || counts["/profile"] != "1" {
				t.Errorf("request counts %v, want /auth/verify 3 and /profile 1", counts)
			}
		})
	}
}
