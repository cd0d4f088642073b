package telemetry

import (
	"context"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
)

// DecisionDurations is http.server.request.duration for the forward-auth
// decision routes, aggregated by Gatehouse rather than by the metrics SDK:
// the same metric (name, unit, description, scope, attributes, bucket
// boundaries, cumulative sum, count, min and max), handed to the
// Prometheus exporter as a producer next to the SDK's series of the other
// routes. Every protected request of every app is a decision, and the
// SDK's Record walks the attribute set by reflection and looks the series
// up by hashing all of it; here a decision adds to a few atomics, about
// half the metrics' cost of a decision (BenchmarkServerMetrics/decision;
// docs/PERFORMANCE.md, "The decision's duration histogram").
//
// Setup uses it only where its output is exactly what the SDK's would be:
// the Prometheus reader alone (cumulative) and no tracing (so no
// exemplars); New when Providers names one, which must then be a producer
// of every reader of the meter provider (sdkmetric.WithProducer). A series
// lives here or in the SDK, never in both: once a key is here it stays;
// past maxCachedSeries new keys go to the SDK.
type DecisionDurations struct {
	start  time.Time
	mu     sync.Mutex // serialises adding a series
	points sync.Map   // seriesKey → *durationPoint
	n      int        // series, under mu
}

// NewDecisionDurations starts the series' cumulative time now.
func NewDecisionDurations() *DecisionDurations {
	return &DecisionDurations{start: time.Now()}
}

// durationPoint is one series: counts per bucket (the count is their sum,
// so a reader never sees a count its buckets disagree with), the sum and
// the extremes as float64 bits.
type durationPoint struct {
	attrs   attribute.Set
	buckets []atomic.Uint64 // len(durationBuckets)+1
	sum     atomic.Uint64
	min     atomic.Uint64
	max     atomic.Uint64
}

// point returns k's series, adding it unless maxCachedSeries are there;
// nil means "record it in the SDK".
func (d *DecisionDurations) point(k seriesKey) *durationPoint {
	if p, ok := d.points.Load(k); ok {
		return p.(*durationPoint)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.points.Load(k); ok {
		return p.(*durationPoint)
	}
	if d.n >= maxCachedSeries {
		return nil
	}
	p := &durationPoint{attrs: k.attributes(), buckets: make([]atomic.Uint64, len(durationBuckets)+1)}
	p.min.Store(math.Float64bits(math.Inf(1)))
	p.max.Store(math.Float64bits(math.Inf(-1)))
	d.points.Store(k, p)
	d.n++
	return p
}

// record adds one duration in seconds. Buckets are upper-inclusive, as the
// SDK's explicit-bucket histogram has them.
func (p *durationPoint) record(v float64) {
	p.buckets[sort.SearchFloat64s(durationBuckets, v)].Add(1)
	for {
		old := p.sum.Load()
		if p.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	for {
		old := p.min.Load()
		if v >= math.Float64frombits(old) || p.min.CompareAndSwap(old, math.Float64bits(v)) {
			break
		}
	}
	for {
		old := p.max.Load()
		if v <= math.Float64frombits(old) || p.max.CompareAndSwap(old, math.Float64bits(v)) {
			break
		}
	}
}

// Produce reports every series with a measurement, cumulatively since
// start (sdkmetric.Producer).
func (d *DecisionDurations) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	var points []metricdata.HistogramDataPoint[float64]
	d.points.Range(func(_, v any) bool {
		p := v.(*durationPoint)
		counts := make([]uint64, len(p.buckets))
		var count uint64
		for i := range p.buckets {
			counts[i] = p.buckets[i].Load()
			count += counts[i]
		}
		if count == 0 {
			return true
		}
		points = append(points, metricdata.HistogramDataPoint[float64]{
			Attributes:   p.attrs,
			StartTime:    d.start,
			Time:         now,
			Count:        count,
			Bounds:       durationBuckets,
			BucketCounts: counts,
			Min:          metricdata.NewExtrema(math.Float64frombits(p.min.Load())),
			Max:          metricdata.NewExtrema(math.Float64frombits(p.max.Load())),
			Sum:          math.Float64frombits(p.sum.Load()),
		})
		return true
	})
	if len(points) == 0 {
		return nil, nil
	}
	var desc httpconv.ServerRequestDuration
	return []metricdata.ScopeMetrics{{
		Scope: instrumentation.Scope{Name: otelhttp.ScopeName, Version: otelhttp.Version},
		Metrics: []metricdata.Metrics{{
			Name:        desc.Name(),
			Description: desc.Description(),
			Unit:        desc.Unit(),
			Data:        metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: points},
		}},
	}}, nil
}

var _ sdkmetric.Producer = (*DecisionDurations)(nil)
