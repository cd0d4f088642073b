package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// otlpReceiver is a minimal OTLP/HTTP collector: it decodes the protobuf
// export requests the SDK sends to /v1/traces and /v1/metrics. A stand-in
// for the OpenTelemetry Collector, which is not a dependency of this
// module and not on the machine; it decodes with the OTLP protocol's own
// generated types, so what it accepts is what a collector accepts.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []receivedSpan
	metrics map[string]bool
	bad     []string
}

type receivedSpan struct {
	service, name       string
	traceID, id, parent string
	resource            map[string]string
	attrs               map[string]string // string values
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err == nil && r.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		o.bad = append(o.bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			o.bad = append(o.bad, "traces: "+err.Error())
			http.Error(w, "bad protobuf", http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			res := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					attrs := map[string]string{}
					for _, kv := range s.GetAttributes() {
						attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
					}
					o.spans = append(o.spans, receivedSpan{
						service: res["service.name"], name: s.GetName(), resource: res,
						traceID: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
						parent: hex.EncodeToString(s.GetParentSpanId()), attrs: attrs,
					})
				}
			}
		}
		resp = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var req colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			o.bad = append(o.bad, "metrics: "+err.Error())
			http.Error(w, "bad protobuf", http.StatusBadRequest)
			return
		}
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					o.metrics[m.GetName()] = true
				}
			}
		}
		resp = &colmetricpb.ExportMetricsServiceResponse{}
	default:
		o.bad = append(o.bad, "unexpected path "+r.URL.Path)
		http.NotFound(w, r)
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// TestRun_ExportsLoginTraceToOTLPConfiguredOnlyByEnvironment starts the
// service in -dev mode configured for telemetry by OTEL_* variables alone,
// logs in, stops it, and looks at what a collector received. It also reads
// the admin listener's /metrics and checks the public port has none.
// Not parallel: it sets process environment variables, which is where the
// OpenTelemetry SDK reads them.
func TestRun_ExportsLoginTraceToOTLPConfiguredOnlyByEnvironment(t *testing.T) {
	recv := &otlpReceiver{metrics: map[string]bool{}}
	collector := httptest.NewServer(recv)
	t.Cleanup(collector.Close)
	for _, k := range []string{"OTEL_SERVICE_NAME", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // restored by the Setenv above after the test
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=otlp-test")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")     // only the flush at shutdown can deliver the spans
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000") // the flush at shutdown must deliver them
	t.Setenv("PORT", "0")                            // the kernel picks both ports; the log names them
	t.Setenv("ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("SHUTDOWN_DELAY", "0s")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"gatehouse", "-dev", "-dev-idp-addr", "127.0.0.1:0", "-env-file", "/nonexistent"},
			os.Getenv, &stdout, io.Discard)
	}()
	_, port := splitAddr(t, listeningAddr(t, &stdout, "listening"))
	admin := listeningAddr(t, &stdout, "admin listening")
	base := "http://localhost:" + port
	waitFor(t, base+"/readyz", http.StatusOK)

	b := testenv.NewBrowser(t)
	back := b.LoginAtProvider(b.StartSignIn(&testenv.App{URL: base}, ""), "alice", devidp.DemoPassword)
	if r := b.Follow(b.Get(back.Header.Get("Location"))); !strings.HasSuffix(r.URL, "/profile") || r.StatusCode != http.StatusOK {
		t.Fatalf("login landed on %s", r)
	}

	// One forward-auth decision: its counter is asynchronous, read from
	// its atomics when a reader collects (the scrape, the OTLP flush).
	if r := b.Get(base + "/auth/verify"); r.StatusCode != http.StatusOK {
		t.Fatalf("GET /auth/verify with the session = %d", r.StatusCode)
	}
	// And Envoy's, with the protected app's path appended: a path that
	// carries a secret must not reach a span.
	const envoyAppPath = "/reset/envoy-path-secret-7f3a"
	if r := b.Get(base + "/auth/forward" + envoyAppPath); r.StatusCode != http.StatusOK {
		t.Fatalf("GET /auth/forward%s with the session = %d", envoyAppPath, r.StatusCode)
	}

	metrics := b.Get("http://" + admin + "/metrics")
	if metrics.StatusCode != http.StatusOK || !strings.Contains(metrics.Body, `gatehouse_auth_signins_total{auth_outcome="success"`) {
		t.Errorf("admin /metrics = %d, lacks the sign-in counter:\n%s", metrics.StatusCode, metrics.Body)
	}
	for _, want := range []string{`gatehouse_build_info{commit="`, `go_version="` + runtime.Version() + `"`,
		"gatehouse_auth_step_duration_seconds_bucket", "gatehouse_auth_flows_active", `http_server_request_duration_seconds_count{`, `http_route="/auth/callback"`,
		`gatehouse_forward_auth_decisions_total{auth_credential="session",auth_outcome="allowed",auth_protected_host="unknown"`} {
		if !strings.Contains(metrics.Body, want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}
	if r := b.Get(base + "/metrics"); r.StatusCode != http.StatusNotFound || strings.Contains(r.Body, "gatehouse_auth") {
		t.Errorf("public /metrics = %d; metrics must only be on the admin listener", r.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run() = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run() did not return after cancel")
	}

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if len(recv.bad) > 0 {
		t.Errorf("collector got malformed requests: %q", recv.bad)
	}
	byID := map[string]receivedSpan{}
	for _, s := range recv.spans {
		byID[s.id] = s
	}
	parentName := func(s receivedSpan) string { return byID[s.parent].name }
	envoyDecision := false
	for _, s := range recv.spans {
		for k, v := range s.attrs {
			if strings.Contains(v, "envoy-path-secret") {
				t.Errorf("span %s records the protected app's path in %s = %q", s.name, k, v)
			}
		}
		if s.attrs["url.path"] == "/auth/forward/*" {
			envoyDecision = true
		}
	}
	if !envoyDecision {
		t.Error("no server span of the Envoy decision with url.path /auth/forward/*")
	}
	found := map[string]receivedSpan{}
	for _, s := range recv.spans {
		if strings.HasPrefix(s.name, "auth.") || strings.HasPrefix(s.name, "GET /auth") || s.name == "VerifyIDToken" {
			if _, seen := found[s.name]; !seen { // the first: the login's, not the decision's auth.session.load
				found[s.name] = s
			}
			if s.service != "gatehouse" || s.resource["deployment.environment.name"] != "otlp-test" {
				t.Errorf("span %s has resource %v, want service.name gatehouse and the OTEL_RESOURCE_ATTRIBUTES", s.name, s.resource)
			}
		}
	}
	for name, parent := range map[string]string{
		"auth.signin":          "POST /auth/signin/zitadel",
		"auth.callback":        "GET /auth/callback",
		"auth.state.verify":    "auth.callback",
		"auth.code.exchange":   "auth.callback",
		"auth.id_token.verify": "auth.callback",
		"auth.userinfo":        "auth.callback",
		"auth.session.create":  "auth.callback",
		"auth.session.load":    "GET /profile",
	} {
		s, ok := found[name]
		if !ok {
			t.Errorf("collector lacks span %s (got %d spans)", name, len(recv.spans))
			continue
		}
		if got := parentName(s); got != parent {
			t.Errorf("span %s has parent %q, want %q", name, got, parent)
		}
	}
	if s, ok := found["VerifyIDToken"]; !ok || !strings.HasPrefix(parentName(s), "VerifyTokens") && parentName(s) != "auth.id_token.verify" {
		t.Errorf("zitadel/oidc's VerifyIDToken span did not reach the collector under auth.id_token.verify")
	}
	for _, m := range []string{"gatehouse.auth.signins", "gatehouse.auth.step.duration", "http.server.request.duration", "gatehouse.forward_auth.decisions"} {
		if !recv.metrics[m] {
			t.Errorf("collector lacks metric %s (flushed at shutdown); got %v", m, recv.metrics)
		}
	}
}

func TestExportDotenvOTel_FillsOnlyWhatTheEnvironmentLacks(t *testing.T) {
	const set, unset = "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"
	t.Setenv(set, "from-environment")
	t.Setenv(unset, "")
	os.Unsetenv(unset) // restored after the test by the Setenv above
	err := exportDotenvOTel(map[string]string{set: "from-dotenv", unset: "a=b", "SESSION_SECRET": "not-otel"}, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(set) != "from-environment" || os.Getenv(unset) != "a=b" {
		t.Fatalf("%s=%q %s=%q; want the environment to win and .env to fill the gap", set, os.Getenv(set), unset, os.Getenv(unset))
	}
	if _, ok := os.LookupEnv("SESSION_SECRET"); ok && os.Getenv("SESSION_SECRET") == "not-otel" {
		t.Fatal("a non-OTEL_ variable was exported")
	}
}
