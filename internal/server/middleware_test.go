package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/web"
)

// TestMiddleware_Order holds the chain to what its order guarantees: every
// answer (a page, a panic's 500, a cross-origin refusal) carries the
// security headers and no-store, has an access line and a span named by
// its route, and a refused request never reaches its handler.
func TestMiddleware_Order(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	spans := tracetest.NewSpanRecorder()
	tel, err := telemetry.New(telemetry.Providers{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	a := &App{cfg: config.Config{Issuer: "https://idp.example", CallbackURL: "https://app.example/auth/callback"},
		log: log, tel: tel, pages: web.NewPages(log)}
	reached := false
	r := mux.NewRouter()
	r.Use(nameRoute)
	r.Handle("/ok/{id}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })).Methods(http.MethodGet)
	r.Handle("/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })).Methods(http.MethodGet)
	r.Handle("/form", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })).Methods(http.MethodPost)
	decided := ""
	decisions := func(req *http.Request) (http.Handler, string) {
		switch req.URL.Path {
		case "/decide/x":
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { decided = r.Method }), "/decide/*"
		case "/decide/boom":
			return http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), "/decide/*"
		}
		return nil, ""
	}
	h := a.middleware(r, decisions)

	for _, tc := range []struct {
		name, method, target string
		crossSite            bool
		status               int
		route, logLine       string
	}{
		{"Page", http.MethodGet, "/ok/1", false, http.StatusOK, "/ok/{id}", `"msg":"request","method":"GET","route":"/ok/{id}","status":200`},
		{"Panic", http.MethodGet, "/boom", false, http.StatusInternalServerError, "/boom", `"msg":"panic in handler","route":"/boom"`},
		{"CrossOrigin", http.MethodPost, "/form", true, http.StatusForbidden, "", `"msg":"request","method":"POST","route":"unmatched","status":403`},
		{"NotFound", http.MethodGet, "/nowhere", false, http.StatusNotFound, "", `"route":"unmatched","status":404`},
		// A proxy asking about another app's cross-site POST (Envoy keeps
		// the method and forwards the browser's headers): a decision, not
		// a form of Gatehouse's, so no cross-origin refusal.
		{"DecisionEndpoint", http.MethodPost, "/decide/x", true, http.StatusOK, "/decide/*", `"msg":"request","method":"POST","route":"/decide/*","status":200`},
		{"DecisionPanic", http.MethodGet, "/decide/boom", false, http.StatusInternalServerError, "/decide/*", `"msg":"panic in handler","route":"/decide/*"`},
	} {
		logs.Reset()
		spans.Reset()
		req := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.crossSite {
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, w.Code, tc.status)
		}
		// (A decision endpoint sets them itself, on the answers a browser
		// may see: internal/forwardauth's tests.)
		if !strings.HasPrefix(tc.name, "Decision") && (w.Header().Get("Content-Security-Policy") == "" || w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("Cache-Control") != "no-store") {
			t.Errorf("%s: security headers missing: %v", tc.name, w.Header())
		}
		if !strings.Contains(logs.String(), tc.logLine) || !strings.Contains(logs.String(), `"msg":"request"`) {
			t.Errorf("%s: log lacks %s (and an access line):\n%s", tc.name, tc.logLine, logs.String())
		}
		ended := spans.Ended()
		if len(ended) != 1 || (tc.route != "" && ended[0].Name() != tc.method+" "+tc.route) {
			t.Errorf("%s: spans %v, want one named by the route %q", tc.name, ended, tc.route)
		}
	}
	if reached {
		t.Error("a cross-origin POST reached its handler")
	}
	if decided != http.MethodPost {
		t.Error("the decision endpoint was not reached past the cross-origin check")
	}
}

// A handler that writes a security header's value in place changes its
// own response only.
func TestSecurityHeaders_ResponsesDoNotShareValues(t *testing.T) {
	t.Parallel()
	h := securityHeaders("https://idp.example", true)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/tamper" {
			for _, v := range w.Header() {
				v[0] = "tampered"
			}
			w.Header()["X-Frame-Options"] = append(w.Header()["X-Frame-Options"], "appended")
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/tamper", nil))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	for k, v := range w.Header() {
		if len(v) != 1 || v[0] == "tampered" || v[0] == "appended" {
			t.Errorf("%s = %q: another response's write reached this one", k, v)
		}
	}
}

// The opener policy goes out where browsers apply it: https and loopback
// development; a plain-http site under another name would only get a
// console error from Chromium on every page.
func TestSecurityHeaders_OpenerPolicyOnlyWhereBrowsersApplyIt(t *testing.T) {
	t.Parallel()
	for callback, want := range map[string]string{
		"https://login.example.com/auth/callback":        "same-origin",
		"http://localhost:3000/auth/callback":            "same-origin",
		"http://127.0.0.1:3000/auth/callback":            "same-origin",
		"http://login.gatehouse.test:3000/auth/callback": "",
	} {
		w := httptest.NewRecorder()
		securityHeadersFor("https://idp.example", callback)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).
			ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		if got := w.Header().Get("Cross-Origin-Opener-Policy"); got != want {
			t.Errorf("%s: COOP %q, want %q", callback, got, want)
		}
		if w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no CSP", callback)
		}
	}
}

// A decision that lets a request through is logged at debug (the proxy
// logs the request itself; the decision counter counts it); a refusal at info.
func TestAccessLog_AllowedDecisionsAtDebug(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil)) // info
	a := &App{cfg: config.Config{Issuer: "https://idp.example", CallbackURL: "https://app.example/auth/callback"},
		log: log, tel: telemetry.Disabled(), pages: web.NewPages(log)}
	status := http.StatusOK
	h := a.middleware(mux.NewRouter(), func(*http.Request) (http.Handler, string) {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }), "/auth/verify"
	})
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/auth/verify", nil))
	if logs.Len() != 0 {
		t.Errorf("an allowed decision was logged at info: %s", logs.String())
	}
	status = http.StatusUnauthorized
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/auth/verify", nil))
	if !strings.Contains(logs.String(), `"route":"/auth/verify","status":401`) {
		t.Errorf("a refusal was not logged at info: %q", logs.String())
	}
}
