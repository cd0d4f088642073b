package forwardauth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/forwardauth"
	"github.com/gatehouse/gatehouse/internal/redirect"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// noSession decides every request unauthenticated: only the counter's
// host label matters here.
type noSession struct{}

func (noSession) Decide(http.ResponseWriter, *http.Request, forward.Rules) auth.Decision {
	return auth.Decision{Outcome: auth.Unauthenticated, Credential: auth.CredentialSession, Reason: auth.ReasonNoSession}
}

// TestHostLabels_MadeUpSubdomainsCannotTakeANamedHostsLabel: behind a
// wildcard ingress and a ".example.com" entry, anyone can send made-up
// subdomains. They draw from a pool of 100 labels and never beyond it;
// Gatehouse's own host and the hosts ALLOWED_REDIRECT_HOSTS names exactly
// keep their own label whenever they first come, and take no slot.
func TestHostLabels_MadeUpSubdomainsCannotTakeANamedHostsLabel(t *testing.T) {
	t.Parallel()
	const pool = 100 // the documented bound
	named := []string{"login.example.com", "grafana.example.com", "app.example.com:8443", "wiki.example.org"}
	for _, tc := range []struct {
		name       string
		namedFirst bool
	}{
		{"named hosts first come after the pool is full", false},
		{"named hosts first come before the pool fills", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reader := sdkmetric.NewManualReader()
			metrics, err := telemetry.NewForwardMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), "test")
			if err != nil {
				t.Fatal(err)
			}
			hosts, err := redirect.ParseHosts(".example.com, grafana.example.com, app.example.com:8443, wiki.example.org")
			if err != nil {
				t.Fatal(err)
			}
			policy, err := redirect.New("https://login.example.com/auth/callback", hosts, "/profile")
			if err != nil {
				t.Fatal(err)
			}
			e := forwardauth.New(forwardauth.Deps{
				Config: forwardauth.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
					PublicOrigin: "https://login.example.com", Redirects: policy},
				Decider: noSession{}, Metrics: metrics,
			})
			ask := func(host string) {
				r := httptest.NewRequest(http.MethodGet, "/auth/forward", nil)
				r.RemoteAddr = "10.1.2.3:40000"
				r.Header.Set("X-Forwarded-Host", host)
				r.Header.Set("X-Forwarded-Uri", "/")
				e.ServeHTTP(httptest.NewRecorder(), r)
			}
			askNamed := func() {
				for _, h := range named {
					ask(h)
				}
			}
			if tc.namedFirst {
				askNamed()
			}
			// More made-up names than the pool holds, each asked by several
			// requests at once.
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for i := range pool + 50 {
						ask(fmt.Sprintf("made-up-%d.example.com", i))
					}
				})
			}
			wg.Wait()
			if !tc.namedFirst {
				askNamed()
			}

			labels := decisionCounts(t, reader, telemetry.AttrProtectedHost)
			madeUp := 0
			for l := range labels {
				if strings.HasPrefix(l, "made-up-") {
					madeUp++
				}
			}
			if madeUp != pool || labels["other"] == 0 {
				t.Errorf("%d made-up subdomains have their own label (other: %d), want the pool's %d and the rest as other", madeUp, labels["other"], pool)
			}
			for _, h := range named {
				if labels[h] == 0 {
					t.Errorf("%s, named in the configuration, has no label of its own", h)
				}
			}
		})
	}
}
