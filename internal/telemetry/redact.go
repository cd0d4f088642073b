package telemetry

import (
	"context"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// pathRedactor rewrites a server span's url.path when it starts: otelhttp
// records the path as received, and the caller's rewrite (SetupOptions.
// SpanPath) says which paths carry what is not Gatehouse's to record. It
// runs before any exporter reads the span (at its end).
type pathRedactor struct {
	rewrite func(path string) (string, bool)
}

func (p pathRedactor) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	for _, kv := range s.Attributes() {
		if kv.Key == semconv.URLPathKey {
			if path, ok := p.rewrite(kv.Value.AsString()); ok {
				s.SetAttributes(semconv.URLPath(path))
			}
			return
		}
	}
}

func (pathRedactor) OnEnd(sdktrace.ReadOnlySpan)      {}
func (pathRedactor) Shutdown(context.Context) error   { return nil }
func (pathRedactor) ForceFlush(context.Context) error { return nil }
