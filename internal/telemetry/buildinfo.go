package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MetricBuildInfo is the build's identity as a gauge that is always 1, its
// labels carrying the facts (Prometheus shows gatehouse_build_info), the
// convention that lets a dashboard join any series to the running version.
const MetricBuildInfo = "gatehouse.build_info"

// RegisterBuildInfo adds MetricBuildInfo with labels to mp.
func RegisterBuildInfo(mp metric.MeterProvider, labels map[string]string) error {
	kvs := make([]attribute.KeyValue, 0, len(labels))
	for k, v := range labels {
		kvs = append(kvs, attribute.String(k, v))
	}
	set := attribute.NewSet(kvs...)
	m := mp.Meter("github.com/gatehouse/gatehouse")
	g, err := m.Int64ObservableGauge(MetricBuildInfo,
		metric.WithDescription("Build of the running binary: version, commit, Go version, build tags. Always 1."))
	if err != nil {
		return fmt.Errorf("%s: %w", MetricBuildInfo, err)
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, 1, metric.WithAttributeSet(set))
		return nil
	}, g)
	if err != nil {
		return fmt.Errorf("%s: %w", MetricBuildInfo, err)
	}
	return nil
}
