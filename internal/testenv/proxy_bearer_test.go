package testenv_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestProxies_APIClientsWithBearerTokens: API clients call the apps behind
// real nginx and real Caddy, configured as documented, with
// Authorization: Bearer tokens the real provider issued (a JWT access
// token of Gatehouse's own application, an opaque token of another
// application of its project, introspected by Gatehouse). Every answer
// is what reaches the client through the proxy.
func TestProxies_APIClientsWithBearerTokens(t *testing.T) {
	t.Parallel()
	const secret = "lab-gatehouse-secret"
	cli := devidp.Client{ID: "api-cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:1/cli"}}
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{
		IdP: testenv.IdPOptions{Secret: secret, JWTAccessTokens: true, Clients: []devidp.Client{cli}},
		Env: config.Overrides{"ZITADEL_CLIENT_SECRET": secret},
	})
	self := devidp.Client{ID: testenv.ClientID, Secret: secret, RedirectURIs: []string{lab.Login + "/auth/callback"}}
	tokens := map[string]string{
		"jwt":    lab.IdP.Tokens(t, self, "alice", pw).AccessToken,
		"opaque": lab.IdP.Tokens(t, cli, "alice", pw).AccessToken,
	}
	bobs := lab.IdP.Tokens(t, cli, "bob", pw).AccessToken
	fresh := func() map[string]string {
		return map[string]string{"nginx": lab.IdP.Tokens(t, cli, "alice", pw).AccessToken, "caddy": lab.IdP.Tokens(t, cli, "alice", pw).AccessToken}
	}
	coldOpaque, countedOpaque := fresh(), fresh()
	call := func(u, token string, headers ...string) *testenv.Response {
		// An API client: no cookies, no browser headers beyond these.
		return get(t, browser(t), u, append([]string{"Accept", "application/json", "Sec-Fetch-Mode", "", "Authorization", "Bearer " + token}, headers...)...)
	}
	apps := []struct{ name, url string }{{"nginx", lab.NginxURL}, {"caddy", lab.CaddyURL}}
	for _, app := range apps {
		host := strings.TrimPrefix(app.url, "http://")
		for kind, token := range tokens {
			t.Run(app.name+"/"+kind+" token: 200, the caller's identity at the upstream", func(t *testing.T) {
				e := echoed(t, call(app.url+"/admin/api/items?page=2", token, spoofed...))
				for h, want := range map[string]string{forward.HeaderUser: aliceID, forward.HeaderGroups: "admin,viewer", forward.HeaderAccessToken: ""} {
					if got := strings.Join(e.Header.Values(h), "|"); got != want {
						t.Errorf("upstream got %s = %q, want %q", h, got, want)
					}
				}
				if e.RequestURI != "/admin/api/items?page=2" || assertionAudience(t, e.Header.Get(forward.HeaderAssertion)) != host {
					t.Errorf("upstream got %s, assertion for %q", e.RequestURI, assertionAudience(t, e.Header.Get(forward.HeaderAssertion)))
				}
				if e.Header.Get("Authorization") != "Bearer "+token {
					t.Errorf("the caller's Authorization did not reach the upstream: %q", e.Header.Get("Authorization"))
				}
			})
		}
		t.Run(app.name+"/bad token: 401 with the challenge, never a redirect", func(t *testing.T) {
			for _, bad := range []string{tokens["jwt"][:len(tokens["jwt"])-8] + "AAAAAAAA", "not-a-token-anyone-issued"} {
				// Even with a browser's navigation headers.
				r := get(t, browser(t), app.url+"/reports", "Authorization", "Bearer "+bad)
				if r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` ||
					r.Header.Get("Location") != "" || !strings.Contains(r.Body, "invalid_token") {
					t.Errorf("%s %v %q", r, r.Header, r.Body)
				}
			}
		})
		t.Run(app.name+"/a cold opaque token costs one introspection, however often it calls", func(t *testing.T) {
			before := lab.IdP.Introspections()
			for range 5 {
				echoed(t, call(app.url+"/admin/api/items", countedOpaque[app.name]))
			}
			if n := lab.IdP.Introspections() - before; n != 1 {
				t.Errorf("%d introspection calls, want 1", n)
			}
		})
		t.Run(app.name+"/missing role: 403", func(t *testing.T) {
			r := call(app.url+"/admin/api/items", bobs)
			if r.StatusCode != http.StatusForbidden || r.Header.Get("WWW-Authenticate") != `Bearer error="insufficient_scope"` {
				t.Errorf("%s %v %q", r, r.Header, r.Body)
			}
			if e := echoed(t, call(app.url+"/api/items", bobs)); e.Header.Get(forward.HeaderGroups) != "viewer" {
				t.Errorf("bob elsewhere: %v", e.Header)
			}
		})
	}

	// The provider goes away: what is cached still passes, an opaque
	// token never seen before cannot be judged: 503, not 401.
	lab.IdP.Stop()
	for _, app := range apps {
		t.Run(app.name+"/provider down, nothing cached: 503", func(t *testing.T) {
			r := call(app.url+"/api/items", coldOpaque[app.name])
			if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, "provider_unavailable") {
				t.Errorf("%s %v %q", r, r.Header, r.Body)
			}
			for kind, token := range tokens {
				if e := echoed(t, call(app.url+"/api/items", token)); e.Header.Get(forward.HeaderUser) != aliceID {
					t.Errorf("a cached %s token during the outage: %v", kind, e.Header)
				}
			}
		})
	}
	lab.IdP.Start(t)
	deadline := time.Now().Add(5 * time.Second)
	for r := call(lab.NginxURL+"/api/items", coldOpaque["nginx"]); r.StatusCode != http.StatusOK; r = call(lab.NginxURL+"/api/items", coldOpaque["nginx"]) {
		if time.Now().After(deadline) {
			t.Fatalf("after the provider returned: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProxies_TokenInventorIsThrottledThroughEachProxy: a client sending
// made-up opaque tokens through real nginx and real Caddy, configured as
// documented, is charged for the introspection calls they cost: past
// RATE_LIMIT_BURST it gets Gatehouse's 429 with Retry-After (through
// nginx's error_page too, which turns auth_request's 429 into a 500) and
// ZITADEL is not asked; its JWT still passes.
func TestProxies_TokenInventorIsThrottledThroughEachProxy(t *testing.T) {
	t.Parallel()
	const secret, burst = "lab-gatehouse-secret", 2
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{
		IdP: testenv.IdPOptions{Secret: secret, JWTAccessTokens: true},
		Env: config.Overrides{"ZITADEL_CLIENT_SECRET": secret, "RATE_LIMIT_PER_MINUTE": "1", "RATE_LIMIT_BURST": "2"},
	})
	self := devidp.Client{ID: testenv.ClientID, Secret: secret, RedirectURIs: []string{lab.Login + "/auth/callback"}}
	jwt := lab.IdP.Tokens(t, self, "alice", pw).AccessToken
	for _, app := range []struct{ name, url, client string }{
		// nginx appends the peer to what the client sent; Caddy replaces
		// it with the peer. Either way each proxy's client has a bucket
		// of its own here.
		{"nginx", lab.NginxURL, "198.51.100.7"},
		{"caddy", lab.CaddyURL, ""},
	} {
		call := func(token string) *testenv.Response {
			return get(t, browser(t), app.url+"/api/items", "Accept", "application/json", "Sec-Fetch-Mode", "",
				"Authorization", "Bearer "+token, "X-Forwarded-For", app.client)
		}
		before := lab.IdP.Introspections()
		for i := range burst {
			if r := call(app.name + "-made-up-" + string(rune('a'+i))); r.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: made-up token %d: %s %q", app.name, i, r, r.Body)
			}
		}
		r := call(app.name + "-made-up-z")
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, "rate_limited") {
			t.Errorf("%s: past the burst: %s %v %q, want 429 with Retry-After", app.name, r, r.Header, r.Body)
		}
		if n := lab.IdP.Introspections() - before; n != burst {
			t.Errorf("%s: %d introspection calls for %d made-up tokens and one throttled, want %d", app.name, n, burst, burst)
		}
		if e := echoed(t, call(jwt)); e.Header.Get(forward.HeaderUser) != aliceID {
			t.Errorf("%s: the client's JWT after the throttle: %v", app.name, e.Header)
		}
	}
}
