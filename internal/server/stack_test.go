//go:build !race

// The race detector's instrumentation changes every frame's size, so this
// file builds without -race only: scripts/test.sh runs it in the bench
// stage, which builds the tests without -race.

package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestDecision_FitsTheStackAConnectionIsShrunkTo: the decisions every
// protected request pays (a session cookie, a cached opaque token, a
// cached JWT) run on a connection's goroutine without growing an 8 KiB
// stack. Between requests the collector halves an idle connection's stack
// that uses under a quarter of it; a decision that needs 16 KiB then
// copies it (into one twice the size) again on the next request after
// every collection, on every connection (docs/PERFORMANCE.md, "The
// decision's stack").
//
// It serves the public handler as deployed by default (metrics on, traces
// off, JSON access log at info) over real connections, so net/http's own
// frames are below it. With traces on, the spans' frames do not fit for
// a bearer token even when the decision is not sampled (not fixed). In front of it, stackProbe first makes the stack exactly 8 KiB,
// then tells whether the handler moved the stack. Not parallel: it turns
// the collector off while it measures, so that no collection shrinks or
// regrows a stack mid-request or changes the size new goroutines' stacks
// start at.
func TestDecision_FitsTheStackAConnectionIsShrunkTo(t *testing.T) {
	const secret = "stack-gatehouse-secret"
	metrics := deployedMetrics(t)
	cli := devidp.Client{ID: "api-cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	idp, app := testenv.Setup(t, testenv.IdPOptions{Secret: secret, JWTAccessTokens: true, Clients: []devidp.Client{cli}}, testenv.AppOptions{
		Options: server.Options{Telemetry: metrics, Logger: productionLogger()},
		Modify: func(c *config.Config) {
			c.ClientSecret = secret
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		},
	})
	cookie := aliceCookie(t, app)
	self := devidp.Client{ID: testenv.ClientID, Secret: secret, RedirectURIs: []string{app.URL + "/auth/callback"}}
	jwt := idp.Tokens(t, self, "alice", pw).AccessToken
	opaque := idp.Tokens(t, cli, "alice", pw).AccessToken

	probe := &stackProbe{}
	srv := httptest.NewServer(probe)
	t.Cleanup(srv.Close)

	runtime.GC()
	gcPercent := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(gcPercent) })
	// The probe must tell, before and after the decisions: a handler that
	// needs more than 8 KiB moves the stack, one that needs little does not.
	selfCheck := func(when string) {
		for _, c := range []struct {
			name string
			h    http.Handler
			want bool
		}{
			{"deep handler", http.HandlerFunc(deepHandler), true},
			{"shallow handler", http.NotFoundHandler(), false},
		} {
			probe.setNext(c.h)
			if moved := probe.serve(t, srv.URL+"/", nil); moved != c.want {
				t.Fatalf("probe %s: %s moved the stack = %v, want %v: the probe cannot tell, so the decisions prove nothing", when, c.name, moved, c.want)
			}
		}
	}
	selfCheck("before the decisions")
	defer selfCheck("after the decisions")

	probe.setNext(app.Handler())
	proxy := map[string]string{"X-Original-URL": "https://grafana.example.com/d/abc?orgId=1", "X-Original-Method": "GET"}
	for _, c := range []struct{ name, header, value string }{
		{"session", "Cookie", cookie.Name + "=" + cookie.Value},
		{"cached opaque token", "Authorization", "Bearer " + opaque},
		{"cached JWT", "Authorization", "Bearer " + jwt},
	} {
		h := map[string]string{c.header: c.value}
		for k, v := range proxy {
			h[k] = v
		}
		probe.serve(t, srv.URL+"/auth/verify?roles=admin", h) // the first: a token is verified or introspected
		if probe.moved(t, srv.URL+"/auth/verify?roles=admin", h) {
			t.Errorf("%s: the decision grew an 8 KiB stack (a frame on its path got larger: move rare branches out of line)", c.name)
		}
	}
}

// stackProbe serves next on a stack of exactly 8 KiB and records whether
// next moved it (a stack grows by being copied to a larger one).
type stackProbe struct {
	next   atomic.Pointer[http.Handler]
	status atomic.Int32
	grew   atomic.Bool
}

func (p *stackProbe) setNext(h http.Handler) { p.next.Store(&h) }

func (p *stackProbe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	next := *p.next.Load()
	fillStack(0)
	before := stackAddr()
	next.ServeHTTP(w, r)
	p.grew.Store(stackAddr() != before)
}

// serve sends one request on a new connection (a new goroutine, whose
// stack starts at the runtime's starting size: the self-checks fail if
// that is above 8 KiB) and returns whether the handler moved the stack.
func (p *stackProbe) serve(t *testing.T, url string, header map[string]string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.status.Store(int32(resp.StatusCode))
	return p.grew.Load()
}

// moved is serve for a decision that must allow the request.
func (p *stackProbe) moved(t *testing.T, url string, header map[string]string) bool {
	t.Helper()
	grew := p.serve(t, url, header)
	if s := p.status.Load(); s != http.StatusOK {
		t.Fatalf("decision answered %d, want 200: the probe measured another path", s)
	}
	return grew
}

// fillStack needs a 4 KiB frame: above net/http's frames (~1.3 KiB; this
// holds below ~3 KiB) it grows a new connection's goroutine stack to
// 8 KiB, not 16, which it keeps while the collector is off.
//
//go:noinline
func fillStack(i int) byte {
	var buf [4 << 10]byte
	buf[i] = 1
	return buf[(i+1)%len(buf)]
}

// stackAddr is the address of a local of a frame right above the
// caller's: it changes when the caller's stack was moved.
//
//go:noinline
func stackAddr() uintptr {
	var b byte
	return uintptr(unsafe.Pointer(&b))
}

// deepHandler needs more than 8 KiB of stack.
func deepHandler(w http.ResponseWriter, _ *http.Request) {
	var buf [9 << 10]byte
	buf[len(buf)-1] = byte(len(w.Header()))
	if deepSink(buf[:]) == 0xff {
		w.WriteHeader(http.StatusTeapot)
	}
}

//go:noinline
func deepSink(b []byte) byte { return b[len(b)-1] }
