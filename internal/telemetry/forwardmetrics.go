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
	AttrOutcome       = "auth.outcome"        // allowed, unauthenticated, forbidden, unavailable, throttled, abandoned, misconfigured, rejected
	AttrProtectedHost = "auth.protected_host" // the original request's host (bounded on the counter: HostLabels)
	// AttrCredential is what decided: session (cookies), jwt or opaque (a
	// bearer token), bearer (a Bearer header without a well-formed token);
	// none on the counter for a misconfigured request.
	AttrCredential = "auth.credential"
	// AttrIntrospectionCached (opaque tokens, span only): the
	// introspection answer came from the cache, no round trip.
	AttrIntrospectionCached = "auth.introspection.cached"
)

// ForwardMetrics counts forward-auth decisions by outcome, credential and
// protected host. Every protected request of every app pays this, so a
// decision only adds one to an atomic counter of its series and the SDK
// reads the counters when it collects (an asynchronous counter): a
// synchronous Add costs more than the rest of the count
// (BenchmarkChain_Verify, internal/server). The caller bounds the hosts
// (forwardauth's host labels); outcomes and credentials are the code's own
// few, so the series are bounded too.
type ForwardMetrics struct {
	series sync.Map // forwardKey → *forwardCount
}

type forwardKey struct{ outcome, credential, host string }

// forwardCount is one series: its attributes, built once, and its count.
type forwardCount struct {
	attrs metric.ObserveOption
	n     atomic.Int64
}

// NewForwardMetrics creates the counter on mp.
func NewForwardMetrics(mp metric.MeterProvider, version string) (*ForwardMetrics, error) {
	m := mp.Meter("github.com/gatehouse/gatehouse/internal/forwardauth", metric.WithInstrumentationVersion(version))
	f := &ForwardMetrics{}
	_, err := m.Int64ObservableCounter(MetricForwardDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Forward-auth decisions (/auth/verify, /auth/forward), by auth.outcome, auth.credential and auth.protected_host "+
			"(Gatehouse's own host and hosts named in ALLOWED_REDIRECT_HOSTS by name; the first 100 that only a .domain entry matches; "+
			"\"other\" for the rest, \"unknown\" without a proxy's original URL)."),
		metric.WithInt64Callback(f.observe))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// observe reports every series' count so far: the SDK turns cumulative
// observations into whatever temporality the exporter wants.
func (f *ForwardMetrics) observe(_ context.Context, o metric.Int64Observer) error {
	f.series.Range(func(_, v any) bool {
		c := v.(*forwardCount)
		o.Observe(c.n.Load(), c.attrs)
		return true
	})
	return nil
}

// Decision counts one decision.
func (f *ForwardMetrics) Decision(outcome, credential, host string) {
	k := forwardKey{outcome, credential, host}
	v, ok := f.series.Load(k)
	if !ok {
		v, _ = f.series.LoadOrStore(k, &forwardCount{attrs: metric.WithAttributeSet(attribute.NewSet(
			attribute.String(AttrOutcome, outcome), attribute.String(AttrCredential, credential), attribute.String(AttrProtectedHost, host)))})
	}
	v.(*forwardCount).n.Add(1)
}
