// Package testenv starts real parts for tests: the OpenID provider from
// zitadel/oidc's op package (via devidp) and Gatehouse itself on loopback,
// and a cookie-keeping HTTP client that walks the login like a browser.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/clientauth"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/loopback"
	"github.com/gatehouse/gatehouse/internal/server"
)

// ClientID is the client registered at the test provider.
const ClientID = "gatehouse-test"

// ApplicationKey is a new application key for ClientID, as ZITADEL lets
// one download it (IdPOptions.Key registers its public half), and
// Gatehouse's parsed copy of it (config.Config.ClientKey).
func ApplicationKey(t testing.TB) (devidp.AppKey, *clientauth.Key) {
	t.Helper()
	key, err := devidp.NewApplicationKey(ClientID)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := clientauth.ParseKey(key.JSON)
	if err != nil {
		t.Fatal(err)
	}
	return key, parsed
}

// sessionSecret is the apps' SESSION_SECRET.
const sessionSecret = "test-session-secret-0123456789-abcdefghij"

// IdP is a running test provider.
type IdP struct {
	*devidp.Provider
	URL string

	refreshes      atomic.Int64
	codes          atomic.Int64
	keyFetch       atomic.Int64
	introspections atomic.Int64
	introHold      atomic.Pointer[chan struct{}]
	userinfoHold   atomic.Pointer[hold]
	tokenStatus    atomic.Int64 // non-zero: the token endpoint's gateway answers this status
	latency        atomic.Int64 // nanoseconds added to token-endpoint answers
	tokenInFlight  atomic.Int64
	tokenPeak      atomic.Int64 // most token requests in flight at once since the last reset
	forgedSub      atomic.Pointer[string]
	mu             sync.Mutex
	srv            *http.Server
	ln             net.Listener
	handler        http.Handler
	held           *loopback.Port // the port while stopped, for Start
}

// IdPOptions tune the provider.
type IdPOptions struct {
	TokenTTL time.Duration
	Secret   string // client secret; empty: public client
	// AppURLs are the app origins whose callback and logout URIs are registered.
	AppURLs []string
	// Backchannel registers the first app URL's /auth/backchannel-logout as
	// the client's back-channel logout URI (one URI per client, as in
	// ZITADEL: with several replicas it reaches one of them).
	Backchannel bool
	Users       []devidp.User // default devidp.DemoUsers()
	// Key registers an application key for the Gatehouse client, which
	// must then authenticate with private_key_jwt (ZITADEL's "JWT" method).
	Key *devidp.AppKey
	// JWTAccessTokens makes the Gatehouse client's access tokens JWTs.
	JWTAccessTokens bool
	// Clients are further applications registered at the provider (API
	// clients, apps of other projects).
	Clients []devidp.Client
	// EchoNonceOnRefresh and UngrantedScopes configure the Gatehouse
	// client as devidp.Client's fields of the same names: a provider that
	// puts the original nonce into refreshed ID tokens, and one that grants
	// fewer scopes than requested.
	EchoNonceOnRefresh bool
	UngrantedScopes    []string
	// RolesOnlyInUserinfo: as devidp.Client's (ZITADEL's default).
	RolesOnlyInUserinfo bool
}

// StartIdP starts a provider on a random loopback port.
func StartIdP(t testing.TB, opts IdPOptions) *IdP {
	t.Helper()
	ln, issuer, err := devidp.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var clients []devidp.Client
	c := devidp.Client{ID: ClientID, Secret: opts.Secret, JWTAccessTokens: opts.JWTAccessTokens,
		EchoNonceOnRefresh: opts.EchoNonceOnRefresh, UngrantedScopes: opts.UngrantedScopes,
		RolesOnlyInUserinfo: opts.RolesOnlyInUserinfo}
	if opts.Key != nil {
		c.KeyID, c.PublicKey = opts.Key.KeyID, opts.Key.PublicKey
	}
	for _, u := range opts.AppURLs {
		c.RedirectURIs = append(c.RedirectURIs, u+"/auth/callback")
		c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, u+"/auth/logout/callback")
	}
	if opts.Backchannel && len(opts.AppURLs) > 0 {
		c.BackchannelLogoutURI = opts.AppURLs[0] + "/auth/backchannel-logout"
	}
	clients = append(append(clients, c), opts.Clients...)
	p, err := devidp.New(devidp.Options{Issuer: issuer, Clients: clients, TokenTTL: opts.TokenTTL, Users: opts.Users})
	if err != nil {
		t.Fatal(err)
	}
	idp := &IdP{Provider: p, URL: issuer, ln: ln}
	idp.handler = idp.count(p.Handler())
	idp.serve(ln)
	t.Cleanup(func() { idp.Stop(); idp.release() })
	return idp
}

func (i *IdP) serve(ln net.Listener) {
	srv := &http.Server{Handler: i.handler, ReadHeaderTimeout: 5 * time.Second}
	i.mu.Lock()
	i.srv, i.ln = srv, ln
	i.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop takes the provider off the network (its state is kept), so tests
// can cause a real outage (connections refused); Start brings it back on
// the same address, which stays reserved for it meanwhile.
func (i *IdP) Stop() {
	i.mu.Lock()
	srv, ln := i.srv, i.ln
	i.srv = nil
	i.mu.Unlock()
	if srv != nil {
		// The port is held from the moment the listener closes, before
		// the connections drain: any other socket could take it then.
		_ = ln.Close()
		held, err := loopback.ReservePort(ln.Addr().(*net.TCPAddr).Port)
		if err != nil {
			panic(fmt.Sprintf("testenv: hold the stopped provider's port: %v", err)) // a test cannot go on without its address
		}
		i.mu.Lock()
		i.held = held
		i.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		srv.Close()
	}
}

// Start serves again on the original address after Stop.
func (i *IdP) Start(t testing.TB) {
	t.Helper()
	addr := strings.TrimPrefix(i.URL, "http://")
	var ln net.Listener
	var err error
	for range 50 { // the port was just released; it may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restart provider: %v", err)
	}
	i.release()
	i.serve(ln)
}

// TokenRequestsPeak is the most token-endpoint requests that were in
// flight at once since the last call (which starts a new count).
func (i *IdP) TokenRequestsPeak() int64 { return i.tokenPeak.Swap(i.tokenInFlight.Load()) }

// release gives up the port Stop reserved.
func (i *IdP) release() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.held != nil {
		i.held.Close()
		i.held = nil
	}
}

// Refreshes counts refresh-token grants the provider has answered.
func (i *IdP) Refreshes() int64 { return i.refreshes.Load() }

// CodeExchanges counts authorization-code grants the provider has answered
// (not those whose caller gave up during SetTokenLatency).
func (i *IdP) CodeExchanges() int64 { return i.codes.Load() }

// KeyFetches counts requests for the provider's signing keys.
func (i *IdP) KeyFetches() int64 { return i.keyFetch.Load() }

// Introspections counts requests to the introspection endpoint.
func (i *IdP) Introspections() int64 { return i.introspections.Load() }

// HoldIntrospection makes the introspection endpoint answer only once
// release is called, so tests can have many requests wait on one call.
func (i *IdP) HoldIntrospection() (release func()) {
	ch := make(chan struct{})
	i.introHold.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			i.introHold.Store(nil)
			close(ch)
		})
	}
}

// HoldUserinfo makes the userinfo endpoint answer only once release is
// called: a sign-in's callback then stays in flight, for real, between its
// code exchange and its session's save. reached is closed when the first
// userinfo request arrives.
func (i *IdP) HoldUserinfo() (reached <-chan struct{}, release func()) {
	h := &hold{release: make(chan struct{}), reached: make(chan struct{})}
	i.userinfoHold.Store(h)
	var once sync.Once
	return h.reached, func() {
		once.Do(func() {
			i.userinfoHold.Store(nil)
			close(h.release)
		})
	}
}

type hold struct {
	release, reached chan struct{}
	once             sync.Once
}

// FailTokenEndpoint makes the token endpoint answer status with an HTML
// body and without reaching the provider, as the gateway in front of a
// provider does while the provider is down (a 5xx no test can make the
// op package itself give); 0 ends it.
func (i *IdP) FailTokenEndpoint(status int) { i.tokenStatus.Store(int64(status)) }

// SetTokenLatency makes the token endpoint answer only after d: a slow
// provider, for real, as seen from the app. A caller that hangs up first
// gets no answer, and the provider's goroutine for it ends then.
func (i *IdP) SetTokenLatency(d time.Duration) { i.latency.Store(int64(d)) }

// ForgeUserinfoSubject makes the userinfo endpoint answer with sub instead
// of the token's subject. This is a deliberate fake: no correct provider
// can be driven to answer for another user, and the relying party must
// still refuse it.
func (i *IdP) ForgeUserinfoSubject(sub string) { i.forgedSub.Store(&sub) }

func (i *IdP) forgeUserinfo(w http.ResponseWriter, r *http.Request, next http.Handler, sub string) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var claims map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &claims) != nil {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	claims["sub"] = sub
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(claims)
}

func (i *IdP) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sub := i.forgedSub.Load(); sub != nil && strings.HasSuffix(r.URL.Path, "/userinfo") {
			i.forgeUserinfo(w, r, next, *sub)
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth/token") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			if status := int(i.tokenStatus.Load()); status != 0 {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(status)
				_, _ = io.WriteString(w, "<html><body><h1>Bad Gateway</h1></body></html>")
				return
			}
			n := i.tokenInFlight.Add(1)
			defer i.tokenInFlight.Add(-1)
			for p := i.tokenPeak.Load(); n > p && !i.tokenPeak.CompareAndSwap(p, n); p = i.tokenPeak.Load() {
			}
			if d := time.Duration(i.latency.Load()); d > 0 {
				// A caller that gave up is not answered (nor is its grant carried out).
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
			switch form.Get("grant_type") {
			case "refresh_token":
				i.refreshes.Add(1)
			case "authorization_code":
				i.codes.Add(1)
			}
		}
		if strings.HasSuffix(r.URL.Path, "/userinfo") {
			if h := i.userinfoHold.Load(); h != nil {
				h.once.Do(func() { close(h.reached) })
				<-h.release
			}
		}
		if strings.HasSuffix(r.URL.Path, "/keys") {
			i.keyFetch.Add(1)
		}
		if strings.HasSuffix(r.URL.Path, "/oauth/introspect") {
			i.introspections.Add(1)
			if hold := i.introHold.Load(); hold != nil {
				<-*hold
			}
		}
		next.ServeHTTP(w, r)
	})
}

// App is a running Gatehouse.
type App struct {
	*server.App
	URL    string
	Config config.Config
	srv    *http.Server
}

// AppOptions tune the app.
type AppOptions struct {
	// Env are settings read (and validated) like the environment's.
	Env config.Overrides
	// Modify changes the validated configuration.
	Modify  func(*config.Config)
	Options server.Options
}

// Listen reserves the app's address before the provider is configured
// (the provider must know the app's redirect URI).
func Listen(t testing.TB) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// Config is a valid configuration for an app at appURL using idp, with
// env's settings on top.
func Config(appURL string, idp *IdP, env ...config.Overrides) config.Config {
	return ConfigWith(appURL, idp.URL, env...)
}

// ConfigWith is Config for the provider at issuer.
func ConfigWith(appURL, issuer string, env ...config.Overrides) config.Config {
	u, _ := url.Parse(appURL)
	ov := config.Overrides{
		"PORT":                  u.Port(),
		"SESSION_SECRET":        sessionSecret,
		"ZITADEL_DOMAIN":        issuer,
		"ZITADEL_CLIENT_ID":     ClientID,
		"ZITADEL_CALLBACK_URL":  appURL + "/auth/callback",
		"ADMIN_ADDR":            "off",
		"RATE_LIMIT_PER_MINUTE": "0",
	}
	for _, e := range env {
		maps.Copy(ov, e)
	}
	cfg, err := config.Load(context.Background(), func(string) (string, bool) { return "", false }, nil, ov)
	if err != nil {
		panic(err)
	}
	return cfg
}

// StartApp starts Gatehouse on ln, configured for idp, and waits until the
// provider is connected unless wait is false.
func StartApp(t testing.TB, ln net.Listener, appURL string, idp *IdP, opts AppOptions, wait bool) *App {
	t.Helper()
	return StartAppFor(t, ln, appURL, idp.URL, opts, wait)
}

// StartAppFor is StartApp for any provider at issuer (the interop tests'
// independent providers).
func StartAppFor(t testing.TB, ln net.Listener, appURL, issuer string, opts AppOptions, wait bool) *App {
	t.Helper()
	cfg := ConfigWith(appURL, issuer, opts.Env)
	if opts.Modify != nil {
		opts.Modify(&cfg)
	}
	o := opts.Options
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a, err := server.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go a.Provider().Run(ctx)
	srv := a.HTTPServer()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
	})
	if wait {
		deadline := time.Now().Add(10 * time.Second)
		for !a.Provider().Ready() {
			if time.Now().After(deadline) {
				t.Fatal("provider never became ready")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return &App{App: a, URL: appURL, Config: cfg, srv: srv}
}

// Setup starts a provider and an app wired to each other.
func Setup(t testing.TB, idpOpts IdPOptions, appOpts AppOptions) (*IdP, *App) {
	t.Helper()
	ln, appURL := Listen(t)
	idpOpts.AppURLs = append(idpOpts.AppURLs, appURL)
	idp := StartIdP(t, idpOpts)
	app := StartApp(t, ln, appURL, idp, appOpts, true)
	return idp, app
}
