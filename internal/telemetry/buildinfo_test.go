package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestRegisterBuildInfo_GaugeOfOneWithTheLabels(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	labels := map[string]string{"version": "1.2.3", "commit": "abc", "go_version": "go1.26.11", "tags": "production"}
	if err := RegisterBuildInfo(mp, labels); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != MetricBuildInfo {
				continue
			}
			g, ok := m.Data.(metricdata.Gauge[int64])
			if !ok || len(g.DataPoints) != 1 || g.DataPoints[0].Value != 1 {
				t.Fatalf("%s = %+v, want one gauge point of 1", m.Name, m.Data)
			}
			for k, want := range labels {
				if got, _ := g.DataPoints[0].Attributes.Value(attribute.Key(k)); got.AsString() != want {
					t.Errorf("label %s = %q, want %q", k, got.AsString(), want)
				}
			}
			return
		}
	}
	t.Fatalf("no %s in %+v", MetricBuildInfo, rm)
}
