package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/internal/web"
)

// BenchmarkSessionCheck is the check every protected request pays
// (RequireSession, the decision of auth/decide.go): find the session
// cookie among a browser's cookies, load the session, check its absolute
// and idle limits, open the step (its metric only on failure), and hand the session to the
// page (here one that writes nothing). No refresh or idle stamp is due, so
// nothing is written. The forward-auth budget is 10 allocations per
// decision; docs/PERFORMANCE.md has the figures.
func BenchmarkSessionCheck(b *testing.B) {
	sealer, err := seal.New("bench-session-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	stores := map[string]func(b *testing.B) session.Store{
		"cookie": func(*testing.B) session.Store { return session.NewCookieStore(sealer, session.CookieOptions{}, clock) },
		"redis": func(b *testing.B) session.Store {
			u, prefix := testenv.Redis(b)
			c, err := session.NewRedisClient(u, "")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return session.NewRedisStore(c, sealer, session.CookieOptions{}, clock, prefix)
		},
	}
	for _, name := range []string{"cookie", "redis"} {
		b.Run(name, func(b *testing.B) {
			st := stores[name](b)
			c := testenv.RecordedSession(b, st, now) // a sign-in at the development provider
			r := httptest.NewRequest(http.MethodGet, "/profile", nil)
			r.Header.Set("Cookie", "_ga=GA1.1.123456789.1700000000; theme=dark; "+c.Name+"="+c.Value+"; lang=en")
			metrics, err := telemetry.NewAuthMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), "bench")
			if err != nil {
				b.Fatal(err)
			}
			rp := auth.New(auth.Deps{Sessions: st, Pages: web.NewPages(nil), Tracer: noop.NewTracerProvider().Tracer(""),
				Observer: metrics, Now: clock, Config: auth.Config{SessionDuration: time.Hour, IdleTimeout: 30 * time.Minute}})
			var got *session.Session
			h := rp.RequireSession(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = auth.SessionFrom(r.Context()) }))
			out := testenv.NewHeaderWriter()
			b.ReportAllocs()
			for b.Loop() {
				got = nil
				clear(out.H)
				h.ServeHTTP(out, r)
				if got == nil || out.Status != 0 || len(out.H) != 0 {
					b.Fatalf("session check refused the session or wrote: %d %v", out.Status, out.H)
				}
			}
		})
	}
}
