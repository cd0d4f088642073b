package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkHandler_Telemetry is the whole public handler serving the
// landing page (templates, security headers, session check) with
// telemetry off (no exporter, no admin listener), with metrics only (the
// default: admin listener, no trace exporter) and with every span
// recorded, so the cost of each is seen against a real request.
func BenchmarkHandler_Telemetry(b *testing.B) {
	metricsOnly, _ := telemetry.New(telemetry.Providers{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	})
	tracing, _ := telemetry.New(telemetry.Providers{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter())),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	})
	cfg := testenv.Config("http://127.0.0.1:3000", &testenv.IdP{URL: "http://127.0.0.1:1"})
	for _, bc := range []struct {
		name string
		tel  *telemetry.Telemetry
	}{{"off", nil}, {"metrics", metricsOnly}, {"tracing", tracing}} {
		b.Run(bc.name, func(b *testing.B) {
			app, err := server.New(cfg, server.Options{Telemetry: bc.tel})
			if err != nil {
				b.Fatal(err)
			}
			h := app.Handler()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("GET / = %d", w.Code)
				}
			}
		})
	}
}
