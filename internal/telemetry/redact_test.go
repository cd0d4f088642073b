package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracerProvider_SpanPathRewritesTheServerSpansPath: a server span's
// url.path is what SetupOptions.SpanPath makes of it, before any exporter
// sees it; paths it keeps stay as received.
func TestTracerProvider_SpanPathRewritesTheServerSpansPath(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := newTracerProvider(exp, resource.Empty(), func(p string) (string, bool) {
		if strings.HasPrefix(p, "/private/") {
			return "/private/*", true
		}
		return p, false
	})
	tel, err := New(Providers{TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	h := tel.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), "gatehouse.example:443", nil, nil)
	for _, p := range []string{"/private/reset/secret-token-1", "/profile"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, s := range exp.GetSpans() {
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.String(), "secret-token") {
				t.Errorf("span %s keeps %s = %q", s.Name, kv.Key, kv.Value.String())
			}
			if kv.Key == "url.path" {
				paths[kv.Value.AsString()] = true
			}
		}
	}
	if !paths["/private/*"] || !paths["/profile"] || len(paths) != 2 {
		t.Errorf("url.path values %v, want /private/* and /profile", paths)
	}
}
