package telemetry

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MetricForwardDecisions counts forward-auth decisions; Prometheus shows
// it as gatehouse_forward_auth_decisions_total.
const MetricForwardDecisions = "gatehouse.forward_auth.decisions"

// Attribute keys of the forward-auth span and counter.
const (
	AttrOutcome       = "auth.outcome"        // allowed, unauthenticated, forbidden, unavailable, misconfigured
	AttrProtectedHost = "auth.protected_host" // the original request's host (bounded on the counter: HostLabels)
)

// ForwardMetrics counts forward-auth decisions by outcome and protected
// host. The caller bounds the hosts (forwardauth's host labels); the
// attribute sets are built once per pair, since every protected request of
// every app pays this (BenchmarkDecision_Verify, internal/forwardauth).
type ForwardMetrics struct {
	decisions metric.Int64Counter
	options   sync.Map // forwardKey → []metric.AddOption
	cached    atomic.Int64
}

type forwardKey struct{ outcome, host string }

// NewForwardMetrics creates the counter on mp.
func NewForwardMetrics(mp metric.MeterProvider, version string) (*ForwardMetrics, error) {
	m := mp.Meter("github.com/gatehouse/gatehouse/internal/forwardauth", metric.WithInstrumentationVersion(version))
	c, err := m.Int64Counter(MetricForwardDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Forward-auth decisions (/auth/verify, /auth/forward), by auth.outcome and auth.protected_host "+
			"(hosts outside ALLOWED_REDIRECT_HOSTS and Gatehouse's own count as \"other\", unknown ones as \"unknown\")."))
	if err != nil {
		return nil, err
	}
	return &ForwardMetrics{decisions: c}, nil
}

// Decision counts one decision.
func (f *ForwardMetrics) Decision(ctx context.Context, outcome, host string) {
	k := forwardKey{outcome, host}
	if o, ok := f.options.Load(k); ok {
		f.decisions.Add(ctx, 1, o.([]metric.AddOption)...)
		return
	}
	o := []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String(AttrOutcome, outcome), attribute.String(AttrProtectedHost, host)))}
	if f.cached.Load() < maxCachedOptions {
		if _, loaded := f.options.LoadOrStore(k, o); !loaded {
			f.cached.Add(1)
		}
	}
	f.decisions.Add(ctx, 1, o...)
}
