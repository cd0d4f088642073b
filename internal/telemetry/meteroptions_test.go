package telemetry

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
)

// TestMeterOptions_ExemplarsOnlyWithTracing: a measurement made inside a
// sampled span carries it as an exemplar when tracing is on, none when
// it is off (no exporter would ever see that span), unless the operator
// asked for exemplars with OTEL_METRICS_EXEMPLAR_FILTER.
func TestMeterOptions_ExemplarsOnlyWithTracing(t *testing.T) {
	sampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled,
	}))
	for _, tc := range []struct {
		name      string
		tracing   bool
		env       string
		exemplars bool
	}{
		{"tracing on", true, "", true},
		{"tracing off", false, "", false},
		{"tracing off, always_on asked for", false, "always_on", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_METRICS_EXEMPLAR_FILTER", tc.env)
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(append(MeterOptions(resource.Default(), tc.tracing), sdkmetric.WithReader(reader))...)
			h, err := mp.Meter("test").Float64Histogram("test.duration")
			if err != nil {
				t.Fatal(err)
			}
			h.Record(sampled, 0.001)
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(t.Context(), &rm); err != nil {
				t.Fatal(err)
			}
			got := -1
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if dps := m.Data.(metricdata.Histogram[float64]).DataPoints; len(dps) == 1 {
						got = len(dps[0].Exemplars)
					}
				}
			}
			if got < 0 {
				t.Fatal("no data point recorded")
			}
			if (got > 0) != tc.exemplars {
				t.Errorf("%d exemplars, want exemplars: %v", got, tc.exemplars)
			}
		})
	}
}
