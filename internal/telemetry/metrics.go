package telemetry

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metric names (OpenTelemetry); Prometheus shows them as
// gatehouse_auth_signins_total, gatehouse_auth_step_duration_seconds and
// gatehouse_auth_flows_active.
const (
	MetricSignIns      = "gatehouse.auth.signins"
	MetricStepDuration = "gatehouse.auth.step.duration"
	MetricActiveFlows  = "gatehouse.auth.flows.active"
)

// Step names the metrics treat specially (the auth package's span names).
const (
	stepSignIn   = "auth.signin"
	stepCallback = "auth.callback"
)

// FlowLifetime is how long a started sign-in can still come back (the auth
// package's flow cookie lifetime).
const FlowLifetime = 10 * time.Minute

// stepBuckets are histogram boundaries (seconds) for auth steps: a local
// cookie check takes well under a millisecond, a provider round trip tens
// of milliseconds, a struggling provider seconds.
func stepBuckets() sdkmetric.Option {
	return sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Name: MetricStepDuration},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{
			Boundaries: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}},
	))
}

// AuthMetrics turns auth-step outcomes into metrics. It implements the auth
// package's Observer.
type AuthMetrics struct {
	signins  metric.Int64Counter
	duration metric.Float64Histogram
	flows    *flowWindow
	// options caches the attribute sets per (step, outcome, reason): every
	// protected request whose session check fails records a step, every
	// sign-in several (BenchmarkSessionCheck).
	// The keys are the auth package's constants, so the map stays small;
	// maxCachedOptions bounds it anyway.
	options sync.Map // stepKey → *stepOptions
	cached  atomic.Int64
}

type stepKey struct{ step, outcome, reason string }

type stepOptions struct {
	duration []metric.RecordOption
	signins  []metric.AddOption
}

const maxCachedOptions = 512

func (a *AuthMetrics) optionsFor(step, outcome, reason string) *stepOptions {
	k := stepKey{step, outcome, reason}
	if o, ok := a.options.Load(k); ok {
		return o.(*stepOptions)
	}
	attrs := outcomeAttrs(outcome, reason)
	withStep := attribute.NewSet(append(attrs, attribute.String("auth.step", step))...)
	o := &stepOptions{
		duration: []metric.RecordOption{metric.WithAttributeSet(withStep)},
		signins:  []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attrs...))},
	}
	if a.cached.Load() < maxCachedOptions {
		if _, loaded := a.options.LoadOrStore(k, o); !loaded {
			a.cached.Add(1)
		}
	}
	return o
}

// NewAuthMetrics creates the instruments on mp.
func NewAuthMetrics(mp metric.MeterProvider, version string) (*AuthMetrics, error) {
	m := mp.Meter("github.com/gatehouse/gatehouse/internal/auth", metric.WithInstrumentationVersion(version))
	signins, err := m.Int64Counter(MetricSignIns, metric.WithUnit("{signin}"),
		metric.WithDescription("Sign-ins that ended, by auth.outcome and auth.failure.reason (callbacks, and sign-ins refused at the start)."))
	if err != nil {
		return nil, err
	}
	duration, err := m.Float64Histogram(MetricStepDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of each auth step (auth.step), by auth.outcome and auth.failure.reason."))
	if err != nil {
		return nil, err
	}
	a := &AuthMetrics{signins: signins, duration: duration, flows: newFlowWindow(FlowLifetime, time.Now)}
	_, err = m.Int64ObservableGauge(MetricActiveFlows, metric.WithUnit("{flow}"),
		metric.WithDescription("Sign-in flows started on this instance within the flow lifetime and not yet back at the callback (an estimate: abandoned flows count until they expire)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(a.flows.active())
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Step records one auth step's outcome.
func (a *AuthMetrics) Step(ctx context.Context, step, outcome, reason string, d time.Duration) {
	o := a.optionsFor(step, outcome, reason)
	a.duration.Record(ctx, d.Seconds(), o.duration...)
	switch {
	case step == stepSignIn && outcome == "success":
		a.flows.start()
	case step == stepSignIn:
		a.signins.Add(ctx, 1, o.signins...)
	case step == stepCallback:
		a.flows.end()
		a.signins.Add(ctx, 1, o.signins...)
	}
}

func outcomeAttrs(outcome, reason string) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, attribute.String("auth.outcome", outcome))
	if reason != "" {
		attrs = append(attrs, attribute.String("auth.failure.reason", reason))
	}
	return attrs
}

// flowWindow estimates pending sign-ins: flows started minus callbacks seen
// within the flow lifetime, in fixed time buckets so memory stays constant
// whatever the traffic. A flow that is abandoned leaves the window when its
// cookie would have expired.
type flowWindow struct {
	mu      sync.Mutex
	now     func() time.Time
	width   time.Duration
	buckets []flowBucket
}

type flowBucket struct {
	slot         int64 // start time / width; identifies the bucket's period
	starts, ends int64
}

func newFlowWindow(lifetime time.Duration, now func() time.Time) *flowWindow {
	const n = 60
	return &flowWindow{now: now, width: lifetime / n, buckets: make([]flowBucket, n)}
}

func (f *flowWindow) bucket() *flowBucket {
	slot := f.now().UnixNano() / int64(f.width)
	b := &f.buckets[slot%int64(len(f.buckets))]
	if b.slot != slot {
		*b = flowBucket{slot: slot}
	}
	return b
}

func (f *flowWindow) start() {
	f.mu.Lock()
	f.bucket().starts++
	f.mu.Unlock()
}

func (f *flowWindow) end() {
	f.mu.Lock()
	f.bucket().ends++
	f.mu.Unlock()
}

func (f *flowWindow) active() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldest := f.now().UnixNano()/int64(f.width) - int64(len(f.buckets)) + 1
	var n int64
	for _, b := range f.buckets {
		if b.slot >= oldest {
			n += b.starts - b.ends
		}
	}
	// Callbacks for flows started elsewhere (another replica, before a
	// restart) or forged ones can outnumber starts.
	return max(n, 0)
}
