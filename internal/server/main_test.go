package server_test

import (
	"log/slog"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gatehouse/gatehouse/internal/session"
)

func TestMain(m *testing.M) {
	// The example provider logs every request through the process-wide
	// default logger; keep test output readable.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	// go-redis logs every refused dial (the failover experiments cause
	// many) through a process-wide logger; the experiments report instead.
	redis.SetLogger(session.RedisLogger(slog.New(slog.DiscardHandler)))
	// zitadel/oidc opens its spans on the global tracer provider and binds
	// to the first one set: set it once, for the whole package.
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(librarySpans)))
	os.Exit(m.Run())
}
