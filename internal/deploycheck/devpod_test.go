package deploycheck

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestTiltDevPodLogin signs in through the development image Tilt built, run by
// scripts/deploy-check.sh with the Deployment's args and environment in a network
// namespace of its own (the pod's stand-in), this test binary entering it. It
// stands in for the Jaeger of `tilt up` with an OTLP/HTTP receiver on the address
// the pod's OTEL_EXPORTER_OTLP_ENDPOINT names (mapped to loopback by /etc/hosts).
// Without GATEHOUSE_DEVPOD_APP it skips: only the deploy check has such a pod.
func TestTiltDevPodLogin(t *testing.T) {
	app := os.Getenv("GATEHOUSE_DEVPOD_APP") // e.g. http://localhost:3000
	if app == "" {
		t.Skip("GATEHOUSE_DEVPOD_APP not set: run by scripts/deploy-check.sh (stage tilt)")
	}
	recv := &spanReceiver{}
	ln, err := net.Listen("tcp", os.Getenv("GATEHOUSE_DEVPOD_OTLP"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(app + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz never answered 200 (last error %v)", app, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The browser's path: app → provider (the issuer the port-forward serves) → app.
	b := testenv.NewBrowser(t)
	toProvider := b.StartSignIn(&testenv.App{URL: app}, "")
	if loc := toProvider.Header.Get("Location"); !strings.HasPrefix(loc, "http://127.0.0.1:3001/") {
		t.Errorf("sign-in redirects to %q, want the development provider at http://127.0.0.1:3001 (the Tiltfile's port-forward)", loc)
	}
	back := b.LoginAtProvider(toProvider, "alice", devidp.DemoPassword)
	page := b.Follow(b.Get(back.Header.Get("Location")))
	if !strings.HasSuffix(page.URL, "/profile") || page.StatusCode != http.StatusOK || !strings.Contains(page.Body, "Alice Admin") {
		t.Fatalf("login landed on %s:\n%.400s", page, page.Body)
	}

	// The login's trace reaches the collector (the batch exporter sends within seconds).
	want := os.Getenv("GATEHOUSE_DEVPOD_SERVICE")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if trace, ok := recv.trace("auth.callback", want); ok {
			for _, name := range []string{"GET /auth/callback", "auth.code.exchange", "auth.id_token.verify"} {
				if !trace[name] {
					t.Errorf("the login's trace lacks span %s (has %v)", name, trace)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no auth.callback span of service %q reached the collector (got %d requests: %v)", want, recv.requests(), recv.bad)
		}
	}
}

// spanReceiver is a minimal OTLP/HTTP traces endpoint, standing in for
// the Collector (not available here) as otlpReceiver does in
// cmd/gatehouse: it decodes with OTLP's generated types.
type spanReceiver struct {
	mu    sync.Mutex
	spans []span
	n     int
	bad   []string
}

type span struct{ service, name, traceID string }

func (s *spanReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err == nil && r.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if r.URL.Path != "/v1/traces" {
		w.WriteHeader(http.StatusOK) // metrics: accepted, not looked at
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil {
		s.bad = append(s.bad, err.Error())
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, span{service, sp.GetName(), hex.EncodeToString(sp.GetTraceId())})
			}
		}
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// trace returns the names of the spans in the trace holding a span called root
// of service.
func (s *spanReceiver) trace(root, service string) (map[string]bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.spans {
		if r.name == root && r.service == service {
			names := map[string]bool{}
			for _, o := range s.spans {
				if o.traceID == r.traceID {
					names[o.name] = true
				}
			}
			return names, true
		}
	}
	return nil, false
}

func (s *spanReceiver) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
