package session

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry names of the Redis client's spans and metric. The topology is
// an attribute of both, so a dashboard can tell a Sentinel failover from a
// cluster's.
const (
	MetricRedisDuration = "db.client.operation.duration"
	AttrRedisMode       = "gatehouse.redis.mode" // standalone, sentinel or cluster
)

// Instrument records a client span ("redis EVALSHA", "redis pipeline") and
// the duration of every command the store sends, with db.system.name,
// db.operation.name, the topology (gatehouse.redis.mode) and, on failure,
// error.type. Call it once, before the store serves.
func (s *RedisStore) Instrument(tp trace.TracerProvider, mp metric.MeterProvider) error {
	const scope = "github.com/gatehouse/gatehouse/internal/session"
	hist, err := mp.Meter(scope).Float64Histogram(MetricRedisDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of the session store's Redis commands and pipelines."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
	if err != nil {
		return err
	}
	s.b.client.AddHook(&redisHook{
		tracer:   tp.Tracer(scope),
		duration: hist,
		base:     []attribute.KeyValue{attribute.String("db.system.name", "redis"), attribute.String(AttrRedisMode, redisMode(s.b.client))},
	})
	return nil
}

type redisHook struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	base     []attribute.KeyValue
	// options caches the attribute set per operation and outcome: every
	// session check sends a command, and building the set each time
	// allocates. Keys are command names and error kinds: a small set.
	options sync.Map // string → metric.RecordOption
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.observe(ctx, strings.ToUpper(cmd.Name()), 0, func(ctx context.Context) error { return next(ctx, cmd) })
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return h.observe(ctx, "pipeline", len(cmds), func(ctx context.Context) error { return next(ctx, cmds) })
	}
}

func (h *redisHook) observe(ctx context.Context, op string, batch int, fn func(context.Context) error) error {
	start := time.Now()
	attrs := append(h.base[:len(h.base):len(h.base)], attribute.String("db.operation.name", op))
	if batch > 0 {
		attrs = append(attrs, attribute.Int("db.operation.batch.size", batch))
	}
	ctx, span := h.tracer.Start(ctx, "redis "+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	err := fn(ctx)
	kind := errorKind(err)
	if kind != "" {
		span.SetAttributes(attribute.String("error.type", kind))
		if kind != "canceled" {
			span.SetStatus(codes.Error, kind) // the kind only: a reply may quote a key
		}
	}
	span.End()
	h.duration.Record(ctx, time.Since(start).Seconds(), h.option(op, kind))
	return err
}

func (h *redisHook) option(op, kind string) metric.RecordOption {
	key := op + "\x00" + kind
	if o, ok := h.options.Load(key); ok {
		return o.(metric.RecordOption)
	}
	attrs := append(h.base[:len(h.base):len(h.base)], attribute.String("db.operation.name", op))
	if kind != "" {
		attrs = append(attrs, attribute.String("error.type", kind))
	}
	o := metric.WithAttributeSet(attribute.NewSet(attrs...))
	h.options.Store(key, o)
	return o
}

// errorKind names an error for telemetry by its class, never its text:
// the Redis error prefix (READONLY, MOVED, CLUSTERDOWN, WRONGPASS...),
// timeout, connection, canceled (the caller left), or other. A missing key
// (redis.Nil) is no error.
func errorKind(err error) string {
	var re redis.Error
	var ne net.Error
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return ""
	case errors.Is(err, context.Canceled):
		// The request that asked went away: nothing wrong with Redis.
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &re):
		prefix, _, _ := strings.Cut(re.Error(), " ")
		if prefix != "" && prefix == strings.ToUpper(prefix) && len(prefix) <= 16 {
			return prefix
		}
		return "redis_error"
	case errors.As(err, &ne):
		return "connection"
	}
	return "other"
}
