package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// librarySpans records the spans zitadel/oidc opens on the global tracer
// provider, which TestMain sets once (the library binds to the first one).
// Tests pick theirs out by trace ID.
var librarySpans = tracetest.NewSpanRecorder()

// traced is an app's telemetry with in-memory recorders.
type traced struct {
	rec     *tracetest.SpanRecorder
	metrics *sdkmetric.ManualReader
	tel     *telemetry.Telemetry
}

func newTraced(t *testing.T) *traced {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	mr := sdkmetric.NewManualReader()
	tel, err := telemetry.New(telemetry.Providers{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(mr)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &traced{rec: rec, metrics: mr, tel: tel}
}

// spans are the app's ended spans and the library's spans in the same traces.
func (tr *traced) spans() []sdktrace.ReadOnlySpan {
	own := tr.rec.Ended()
	ids := map[trace.TraceID]bool{}
	for _, s := range own {
		ids[s.SpanContext().TraceID()] = true
	}
	out := slices.Clone(own)
	for _, s := range librarySpans.Ended() {
		if ids[s.SpanContext().TraceID()] {
			out = append(out, s)
		}
	}
	return out
}

func (tr *traced) metricData(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tr.metrics.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// signIns returns the sign-in counter's value for the attribute set that
// has outcome and (if not empty) reason.
func (tr *traced) signIns(t *testing.T, outcome, reason string) int64 {
	t.Helper()
	return int64(tr.counts(t, telemetry.MetricSignIns, "auth.outcome", "auth.failure.reason")[strings.TrimSpace(outcome+" "+reason)])
}

// steps counts the step-duration measurements by "step outcome reason".
func (tr *traced) steps(t *testing.T) map[string]uint64 {
	t.Helper()
	return tr.counts(t, telemetry.MetricStepDuration, "auth.step", "auth.outcome", "auth.failure.reason")
}

// counts adds up the metric's data points (a counter's values, a
// histogram's counts) by the values of keys, joined by spaces.
func (tr *traced) counts(t *testing.T, name string, keys ...string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	by := func(attrs attribute.Set) string {
		vals := make([]string, len(keys))
		for i, k := range keys {
			v, _ := attrs.Value(attribute.Key(k))
			vals[i] = v.AsString()
		}
		return strings.TrimSpace(strings.Join(vals, " "))
	}
	for _, sm := range tr.metricData(t).ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					out[by(dp.Attributes)] += uint64(dp.Value)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					out[by(dp.Attributes)] += dp.Count
				}
			}
		}
	}
	return out
}

// TestTelemetry_SessionChecksRecordOnlyFailures: the checks every
// protected request runs (auth.session.load) put a step metric on record
// only when they fail, with the reason; a sign-in's steps record every
// outcome. (auth.bearer.verify is the same call: internal/auth's
// checkStep.)
func TestTelemetry_SessionChecksRecordOnlyFailures(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Options: server.Options{Telemetry: tr.tel}})
	b := testenv.NewBrowser(t)
	if r := b.Login(app, "alice", pw); r.StatusCode != http.StatusOK {
		t.Fatalf("login landed on %s", r)
	}
	for range 3 {
		if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK {
			t.Fatalf("profile = %s", r)
		}
	}
	if r := testenv.NewBrowser(t).Get(app.URL + "/profile"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("profile without a session = %s", r)
	}
	got := tr.steps(t)
	if got["auth.callback success"] != 1 || got["auth.code.exchange success"] != 1 {
		t.Errorf("a sign-in's steps: %v, want each success once", got)
	}
	if n := got["auth.session.load success"]; n != 0 {
		t.Errorf("auth.session.load success recorded %d times, want never (the decision counter and the route's duration have them)", n)
	}
	if n := got["auth.session.load failure "+auth.ReasonNoSession]; n != 1 {
		t.Errorf("auth.session.load failure %s recorded %d times, want once: %v", auth.ReasonNoSession, n, got)
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// render draws the tree of server spans and auth.* spans, children in
// start order, auth spans with their outcome and reason.
func render(spans []sdktrace.ReadOnlySpan) string {
	keep := func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanKind() == trace.SpanKindServer || strings.HasPrefix(s.Name(), "auth.")
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	byID := map[trace.SpanID]bool{}
	for _, s := range spans {
		if keep(s) {
			byID[s.SpanContext().SpanID()] = true
		}
	}
	for _, s := range spans {
		if !keep(s) {
			continue
		}
		if p := s.Parent().SpanID(); s.Parent().IsValid() && byID[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) }
	var b strings.Builder
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		b.WriteString(strings.Repeat("  ", depth) + s.Name())
		if o := attr(s, "auth.outcome"); o != "" {
			b.WriteString(" " + o)
		}
		if r := attr(s, "auth.failure.reason"); r != "" {
			b.WriteString(" " + r)
		}
		b.WriteString("\n")
		kids := children[s.SpanContext().SpanID()]
		slices.SortFunc(kids, byStart)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	slices.SortFunc(roots, byStart)
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

// ancestorNamed reports whether s has an ancestor called name.
func ancestorNamed(spans []sdktrace.ReadOnlySpan, s sdktrace.ReadOnlySpan, name string) bool {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, x := range spans {
		byID[x.SpanContext().SpanID()] = x
	}
	for p, ok := byID[s.Parent().SpanID()]; ok; p, ok = byID[p.Parent().SpanID()] {
		if p.Name() == name {
			return true
		}
	}
	return false
}

func named(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// atProvider signs in at the provider and returns the browser and the
// callback URL the provider sent it to (not yet visited).
func atProvider(t *testing.T, app *testenv.App, user string) (*testenv.Browser, *url.URL) {
	t.Helper()
	b := testenv.NewBrowser(t)
	back := b.LoginAtProvider(b.StartSignIn(app, ""), user, pw)
	u, err := back.Location()
	if err != nil {
		t.Fatal(err)
	}
	return b, u
}

func withQuery(u *url.URL, set map[string]string) string {
	c := *u
	q := c.Query()
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}

func TestTelemetry_SuccessfulLoginSpanTree(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	clock := &testenv.Clock{}
	idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
		Options: server.Options{Telemetry: tr.tel, Now: clock.Now},
	})
	b := testenv.NewBrowser(t)
	if r := b.Login(app, "alice", pw); r.StatusCode != http.StatusOK {
		t.Fatalf("login landed on %s", r)
	}
	clock.Advance(10 * time.Minute) // the access token is now expired: the next request refreshes
	before := idp.Refreshes()
	if r := b.Get(app.URL + "/profile"); r.StatusCode != http.StatusOK || idp.Refreshes() != before+1 {
		t.Fatalf("profile after expiry = %s, refreshes %d", r, idp.Refreshes()-before)
	}
	b.Get(app.URL + "/healthz")
	b.Get(app.URL + "/static/app.css")
	page := b.PostForm(app.URL+"/auth/logout", nil)
	action, fields := testenv.Form(t, page.Body)
	if r := b.Follow(b.PostForm(action, fields)); !strings.HasSuffix(r.URL, "/auth/logout/success") {
		t.Fatalf("logout ended at %s", r)
	}

	spans := tr.spans()
	want := `POST /auth/signin/zitadel
  auth.signin success
GET /auth/callback
  auth.callback success
    auth.state.verify success
    auth.code.exchange success
    auth.id_token.verify success
    auth.userinfo success
    auth.session.create success
GET /profile
  auth.session.load success
GET /profile
  auth.session.load success
    auth.token.refresh success
POST /auth/logout
  auth.logout success
GET /auth/logout/callback
  auth.logout.callback success
GET /auth/logout/success
`
	if got := render(spans); got != want {
		t.Errorf("span tree:\n%s\nwant:\n%s", got, want)
	}

	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			route := attr(s, "http.route")
			if s.Name() != attr(s, "http.request.method")+" "+route {
				t.Errorf("server span %q has http.route %q", s.Name(), route)
			}
		}
		if strings.HasPrefix(s.Name(), "auth.") && (s.Status().Code != codes.Unset || attr(s, "auth.failure.reason") != "") {
			t.Errorf("%s: status %v reason %q on a successful login", s.Name(), s.Status(), attr(s, "auth.failure.reason"))
		}
	}
	cb := named(spans, "auth.callback")[0]
	if got := attr(cb, "enduser.id"); got != "300000000000000001" {
		t.Errorf("auth.callback enduser.id = %q, want alice's sub", got)
	}
	for _, s := range named(spans, "GET /profile") {
		if got := attr(s, "enduser.id"); got != "300000000000000001" {
			t.Errorf("GET /profile enduser.id = %q, want alice's sub", got)
		}
	}

	// The library's spans and the provider calls nest under the auth steps.
	nest := []struct{ step, child string }{
		{"auth.code.exchange", "POST /oauth/token"},
		{"auth.id_token.verify", "VerifyIDToken"},
		{"auth.userinfo", "Userinfo"},
		{"auth.userinfo", "GET /userinfo"},
		{"auth.token.refresh", "POST /oauth/token"},
		{"auth.token.refresh", "VerifyIDToken"}, // the refreshed ID token
		{"auth.token.refresh", "Userinfo"},      // the roles, read again with the new access token
	}
	for _, n := range nest {
		found := false
		for _, s := range named(spans, n.child) {
			found = found || ancestorNamed(spans, s, n.step)
		}
		if !found {
			var names []string
			for _, s := range spans {
				names = append(names, s.Name())
			}
			t.Errorf("no %q span under %s; spans: %q", n.child, n.step, names)
		}
	}
	// Every provider call made while serving a request belongs to its trace
	// (only the background discovery at start-up has traces of its own).
	requestTraces := map[trace.TraceID]bool{}
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			requestTraces[s.SpanContext().TraceID()] = true
		}
	}
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindClient && requestTraces[s.SpanContext().TraceID()] && !ancestorNamed(spans, s, "auth.callback") &&
			!ancestorNamed(spans, s, "auth.session.load") && !ancestorNamed(spans, s, "auth.userinfo") && !ancestorNamed(spans, s, "auth.signin") {
			t.Errorf("client span %q is outside every auth step", s.Name())
		}
	}
	if got := tr.signIns(t, "success", ""); got != 1 {
		t.Errorf("sign-in counter (success) = %d, want 1", got)
	}
}

func TestTelemetry_EachFailureKindHasItsReason(t *testing.T) {
	t.Parallel()
	type env struct {
		idp   *testenv.IdP
		app   *testenv.App
		clock *testenv.Clock
	}
	cases := []struct {
		name   string
		modify func(*config.Config)
		do     func(t *testing.T, e env)
		steps  []string // the failing span, then its failing auth.* ancestors
		reason string
	}{
		{"StateMismatch", nil, func(t *testing.T, e env) {
			b, u := atProvider(t, e.app, "alice")
			b.Get(withQuery(u, map[string]string{"state": "forged-state"}))
		}, []string{"auth.state.verify", "auth.callback"}, auth.ReasonStateMismatch},
		{"CodeExchangeFailed", nil, func(t *testing.T, e env) {
			b, u := atProvider(t, e.app, "alice")
			b.Get(withQuery(u, map[string]string{"code": "not-a-code"}))
		}, []string{"auth.code.exchange", "auth.callback"}, auth.ReasonCodeExchangeFailed},
		{"IDTokenInvalid", nil, func(t *testing.T, e env) {
			// A nonce swapped on the way to the provider: the ID token
			// comes back with a nonce this sign-in never issued.
			b := testenv.NewBrowser(t)
			toIdP := b.StartSignIn(e.app, "")
			loc, _ := toIdP.Location()
			toIdP.Header.Set("Location", withQuery(loc, map[string]string{"nonce": "swapped-nonce"}))
			back := b.LoginAtProvider(toIdP, "alice", pw)
			b.Get(back.Header.Get("Location"))
		}, []string{"auth.id_token.verify", "auth.callback"}, auth.ReasonIDTokenInvalid},
		{"UserinfoSubMismatch", nil, func(t *testing.T, e env) {
			e.idp.ForgeUserinfoSubject("999999999999999999") // deliberate fake: see ForgeUserinfoSubject
			b, u := atProvider(t, e.app, "alice")
			b.Get(u.String())
		}, []string{"auth.userinfo", "auth.callback"}, auth.ReasonUserinfoSubMismatch},
		{"ProviderUnavailableAtCodeExchange", nil, func(t *testing.T, e env) {
			b, u := atProvider(t, e.app, "alice")
			e.idp.Stop()
			b.Get(u.String())
		}, []string{"auth.code.exchange", "auth.callback"}, auth.ReasonProviderUnavailable},
		{"ProviderUnavailableAtSignIn", nil, func(t *testing.T, e env) {
			e.idp.Stop()
			testenv.NewBrowser(t).StartSignIn(e.app, "")
		}, []string{"auth.signin"}, auth.ReasonProviderUnavailable},
		{"AccessDenied", nil, func(t *testing.T, e env) {
			b := testenv.NewBrowser(t)
			loc, _ := b.StartSignIn(e.app, "").Location()
			b.Get(e.app.URL + "/auth/callback?error=access_denied&state=" + url.QueryEscape(loc.Query().Get("state")))
		}, []string{"auth.callback"}, auth.ReasonAccessDenied},
		{"ProviderError", nil, func(t *testing.T, e env) {
			b, u := atProvider(t, e.app, "alice")
			b.Get(withQuery(u, map[string]string{"code": "", "error": "server_error"}))
		}, []string{"auth.callback"}, auth.ReasonProviderError},
		{"IssuerMismatch", nil, func(t *testing.T, e env) {
			b, u := atProvider(t, e.app, "alice")
			b.Get(withQuery(u, map[string]string{"iss": "http://evil.example"}))
		}, []string{"auth.callback"}, auth.ReasonIssuerMismatch},
		{"CodeMissing", nil, func(t *testing.T, e env) {
			b, u := atProvider(t, e.app, "alice")
			b.Get(withQuery(u, map[string]string{"code": ""}))
		}, []string{"auth.callback"}, auth.ReasonCodeMissing},
		{"NoSession", nil, func(t *testing.T, e env) {
			testenv.NewBrowser(t).Get(e.app.URL + "/profile")
		}, []string{"auth.session.load"}, auth.ReasonNoSession},
		{"SessionExpired", nil, func(t *testing.T, e env) {
			b := testenv.NewBrowser(t)
			b.Login(e.app, "alice", pw)
			e.clock.Advance(2 * time.Hour)
			b.Get(e.app.URL + "/profile")
		}, []string{"auth.session.load"}, auth.ReasonSessionExpired},
		{"RefreshFailedWithoutRefreshToken", func(c *config.Config) {
			c.Scopes = slices.DeleteFunc(slices.Clone(c.Scopes), func(s string) bool { return s == "offline_access" })
		}, func(t *testing.T, e env) {
			b := testenv.NewBrowser(t)
			b.Login(e.app, "alice", pw)
			e.clock.Advance(10 * time.Minute)
			b.Get(e.app.URL + "/profile")
		}, []string{"auth.token.refresh", "auth.session.load"}, auth.ReasonRefreshFailed},
		{"ProviderUnavailableAtRefresh", nil, func(t *testing.T, e env) {
			b := testenv.NewBrowser(t)
			b.Login(e.app, "alice", pw)
			e.idp.Stop()
			e.clock.Advance(10 * time.Minute)
			b.Get(e.app.URL + "/profile")
		}, []string{"auth.token.refresh", "auth.session.load"}, auth.ReasonProviderUnavailable},
		{"LogoutStateMismatch", nil, func(t *testing.T, e env) {
			testenv.NewBrowser(t).Get(e.app.URL + "/auth/logout/callback?state=forged")
		}, []string{"auth.logout.callback"}, auth.ReasonLogoutState},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTraced(t)
			clock := &testenv.Clock{}
			idp, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{
				Modify:  tc.modify,
				Options: server.Options{Telemetry: tr.tel, Now: clock.Now},
			})
			tc.do(t, env{idp: idp, app: app, clock: clock})

			spans := tr.spans()
			failing := named(spans, tc.steps[0])
			var s sdktrace.ReadOnlySpan
			for _, f := range failing {
				if attr(f, "auth.outcome") == "failure" {
					s = f
				}
			}
			if s == nil {
				t.Fatalf("no failed %s span; tree:\n%s", tc.steps[0], render(spans))
			}
			for _, name := range tc.steps[1:] {
				if !ancestorNamed(spans, s, name) {
					t.Errorf("%s is not under %s", tc.steps[0], name)
				}
			}
			for _, name := range tc.steps {
				for _, x := range named(spans, name) {
					if x.SpanContext().TraceID() != s.SpanContext().TraceID() {
						continue
					}
					if attr(x, "auth.outcome") != "failure" || attr(x, "auth.failure.reason") != tc.reason {
						t.Errorf("%s: outcome %q reason %q, want failure %q", name, attr(x, "auth.outcome"), attr(x, "auth.failure.reason"), tc.reason)
					}
					if x.Status().Code != codes.Error || x.Status().Description != tc.reason {
						t.Errorf("%s: status %+v, want Error %q", name, x.Status(), tc.reason)
					}
					// The recorded error says what went wrong, not just a type name.
					if !slices.ContainsFunc(x.Events(), func(e sdktrace.Event) bool {
						for _, kv := range e.Attributes {
							if kv.Key == "exception.message" && kv.Value.AsString() != "" && !strings.HasPrefix(kv.Value.AsString(), "error of type") {
								return e.Name == "exception"
							}
						}
						return false
					}) {
						t.Errorf("%s: no recorded error with a message: %v", name, x.Events())
					}
				}
			}
			var recorded strings.Builder
			for _, x := range spans {
				fmt.Fprintln(&recorded, x.Name(), x.Status().Description, x.Attributes(), x.Events())
			}
			for _, injected := range []string{"forged", "not-a-code", "swapped-nonce", "evil.example", "999999999999999999"} {
				if strings.Contains(recorded.String(), injected) {
					t.Errorf("the spans echo the injected value %q", injected)
				}
			}
			if tc.steps[len(tc.steps)-1] == "auth.callback" || tc.steps[0] == "auth.signin" {
				if got := tr.signIns(t, "failure", tc.reason); got != 1 {
					t.Errorf("sign-in counter (failure, %s) = %d, want 1", tc.reason, got)
				}
			}
		})
	}
}

// TestTelemetry_FullLoginLeaksNoSecret runs a whole login (confidential
// client, refresh, userinfo, logout) and looks for every secret value it
// used in every span, event, metric attribute and log line.
func TestTelemetry_FullLoginLeaksNoSecret(t *testing.T) {
	t.Parallel()
	const clientSecret = "client-secret-for-the-leak-test-7f3a9c"
	tr := newTraced(t)
	var logs testenv.SyncBuffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	clock := &testenv.Clock{}
	idp, app := testenv.Setup(t, testenv.IdPOptions{Secret: clientSecret}, testenv.AppOptions{
		Modify: func(c *config.Config) {
			c.ClientSecret = clientSecret
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} // this test speaks as the proxy too
			c.ForwardAccessToken = true
		},
		Options: server.Options{Telemetry: tr.tel, Now: clock.Now, Logger: log},
	})
	secrets := map[string]string{"client secret": clientSecret, "e-mail": "alice@" + devidp.DemoOrgDomain}
	// Forward-auth decisions, as nginx asks (allowed, forbidden): their
	// answers carry the access token and the signed assertion.
	decide := func(b *testenv.Browser, label string) {
		for _, rules := range []string{"roles=admin", "roles=nobody"} {
			req, _ := http.NewRequest(http.MethodGet, app.URL+"/auth/verify?"+rules, nil)
			req.Header.Set("X-Original-URL", app.URL+"/some/page?q=1")
			r := b.Do(req)
			if rules == "roles=admin" {
				secrets[label+" assertion"] = r.Header.Get("X-Gatehouse-Assertion")
				secrets[label+" forwarded access token"] = r.Header.Get("X-Auth-Request-Access-Token")
			}
		}
	}
	addCookies := func(b *testenv.Browser, urls ...string) {
		for _, u := range urls {
			pu, _ := url.Parse(u)
			for _, c := range b.Jar.Cookies(pu) {
				secrets["cookie "+c.Name] = c.Value
			}
		}
	}

	b := testenv.NewBrowser(t)
	toIdP := b.StartSignIn(app, "")
	loc, _ := toIdP.Location()
	secrets["nonce"] = loc.Query().Get("nonce")
	secrets["code_challenge"] = loc.Query().Get("code_challenge")
	addCookies(b, app.URL) // the sign-in flow cookie
	back := b.LoginAtProvider(toIdP, "alice", pw)
	cb, _ := back.Location()
	secrets["code"], secrets["state"] = cb.Query().Get("code"), cb.Query().Get("state")
	addCookies(b, idp.URL)
	if r := b.Follow(b.Get(cb.String())); r.StatusCode != http.StatusOK {
		t.Fatalf("login landed on %s", r)
	}
	tokens := func(label string) {
		store, err := server.NewSessionStore(app.Config, clock.Now, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, app.URL+"/profile", nil)
		for _, c := range b.Jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
		s, err := store.Load(req)
		if err != nil {
			t.Fatalf("load session: %v", err)
		}
		secrets[label+" access token"], secrets[label+" refresh token"] = s.AccessToken, s.RefreshToken
		secrets[label+" ID token"] = s.IDToken
		parts := strings.Split(s.IDToken, ".")
		for i, p := range parts[1:] { // the header is the same in every token
			secrets[fmt.Sprintf("%s ID token part %d", label, i+1)] = p
		}
	}
	tokens("first")
	addCookies(b, app.URL)
	decide(b, "first")
	clock.Advance(10 * time.Minute)
	b.Get(app.URL + "/profile") // refresh
	tokens("refreshed")
	decide(b, "refreshed")
	addCookies(b, app.URL)
	if ui := b.Get(app.URL + "/auth/userinfo"); ui.StatusCode != http.StatusOK {
		t.Fatalf("userinfo = %d", ui.StatusCode)
	}
	page := b.PostForm(app.URL+"/auth/logout", nil)
	action, fields := testenv.Form(t, page.Body)
	secrets["logout state"], secrets["id_token_hint"] = fields.Get("state"), fields.Get("id_token_hint")
	addCookies(b, app.URL)
	b.Follow(b.PostForm(action, fields))

	for name, v := range secrets {
		if len(v) < 8 {
			t.Fatalf("secret %s = %q: the test did not capture it", name, v)
		}
	}
	var haystack strings.Builder
	for _, s := range append(tr.spans(), librarySpans.Ended()...) {
		fmt.Fprintln(&haystack, s.Name(), s.Status().Description, s.Attributes(), s.Resource().Attributes())
		for _, e := range s.Events() {
			fmt.Fprintln(&haystack, e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			fmt.Fprintln(&haystack, l.Attributes)
		}
	}
	fmt.Fprintf(&haystack, "%+v\n", tr.metricData(t))
	haystack.WriteString(logs.String())
	if !strings.Contains(haystack.String(), "auth.callback") || !strings.Contains(haystack.String(), "auth.verify") ||
		!strings.Contains(logs.String(), `"msg":"signed in"`) {
		t.Fatal("nothing recorded: the scan would prove nothing")
	}
	for name, v := range secrets {
		if strings.Contains(haystack.String(), v) {
			t.Errorf("the %s appears in spans, metrics or logs", name)
		}
	}
}

// TestTelemetry_LogLinesCarryTraceAndSpanIDs: the access log line and the
// lines written inside a request lead to their trace and span.
func TestTelemetry_LogLinesCarryTraceAndSpanIDs(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	var logs testenv.SyncBuffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&logs, nil)))
	_, app := testenv.Setup(t, testenv.IdPOptions{}, testenv.AppOptions{Options: server.Options{Telemetry: tr.tel, Logger: log}})
	b := testenv.NewBrowser(t)
	b.Login(app, "alice", pw)

	// An incoming W3C traceparent is continued, not replaced.
	const parent = "4bf92f3577b34da6a3ce929d0e0736aa"
	req, _ := http.NewRequest(http.MethodGet, app.URL+"/profile", nil)
	req.Header.Set("Traceparent", "00-"+parent+"-00f067aa0ba902b7-01")
	b.Do(req)
	// The access line and the server span are written after the response
	// has gone out: the client can be faster than the server's last step.
	eventually(t, 5*time.Second, "the traced request's access line", func() bool {
		return strings.Contains(logs.String(), `"route":"/profile","status":200`) &&
			strings.Count(logs.String(), `"msg":"request"`) >= 4 && strings.Contains(logs.String(), parent) &&
			slices.ContainsFunc(tr.rec.Ended(), func(s sdktrace.ReadOnlySpan) bool {
				return s.SpanContext().TraceID().String() == parent && s.SpanKind() == trace.SpanKindServer
			})
	})

	spans := tr.spans()
	type line struct {
		Msg, Route, Method, TraceID, SpanID string
		Status, Bytes                       int
		Duration                            any
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		s := func(k string) string { v, _ := m[k].(string); return v }
		n := func(k string) int { v, _ := m[k].(float64); return int(v) }
		lines = append(lines, line{Msg: s("msg"), Route: s("route"), Method: s("method"), TraceID: s("trace_id"),
			SpanID: s("span_id"), Status: n("status"), Bytes: n("bytes"), Duration: m["duration"]})
	}
	spanOf := func(traceID, spanID string) sdktrace.ReadOnlySpan {
		for _, s := range spans {
			if s.SpanContext().TraceID().String() == traceID && s.SpanContext().SpanID().String() == spanID {
				return s
			}
		}
		return nil
	}
	var requests, signedIn int
	var continued bool
	for _, l := range lines {
		switch l.Msg {
		case "request":
			requests++
			s := spanOf(l.TraceID, l.SpanID)
			if s == nil || s.Name() != l.Method+" "+l.Route || l.Status == 0 || l.Duration == nil {
				t.Errorf("access line %+v does not lead to its server span", l)
			}
			continued = continued || l.TraceID == parent
		case "signed in":
			signedIn++
			if s := spanOf(l.TraceID, l.SpanID); s == nil || s.Name() != "auth.callback" {
				t.Errorf("\"signed in\" line %+v does not lead to the auth.callback span", l)
			}
		}
	}
	if requests < 4 || signedIn != 1 {
		t.Errorf("%d access lines and %d sign-in lines in:\n%s", requests, signedIn, logs.String())
	}
	if !continued {
		t.Errorf("no access line in the caller's trace %s", parent)
	}
}

// TestForwardMetrics_OutsiderCannotRaiseTheMisconfiguredAlert: the
// decision endpoints are on the public listener. Requests from a peer
// that is not a trusted proxy, with made-up rules, count as "rejected",
// never as the "misconfigured" that docs/OBSERVABILITY.md's alert reads
// as "a proxy is misconfigured".
func TestForwardMetrics_OutsiderCannotRaiseTheMisconfiguredAlert(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	idp := testenv.StartIdP(t, testenv.IdPOptions{})
	app, err := server.New(testenv.Config("http://127.0.0.1:3000", idp), server.Options{Telemetry: tr.tel})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/auth/verify?x", "/auth/forward?utm_source=mail", "/auth/forward;junk/x"} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = "203.0.113.9:5555" // an internet client, not a trusted proxy
		w := httptest.NewRecorder()
		app.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest {
			t.Errorf("GET %s from the internet = %d, want 400", target, w.Code)
		}
	}
	got := tr.counts(t, "gatehouse.forward_auth.decisions", "auth.outcome")
	if got["misconfigured"] != 0 || got["rejected"] != 3 {
		t.Errorf("decisions by outcome %v: want 3 rejected and no misconfigured (the alert's outcome)", got)
	}
}
