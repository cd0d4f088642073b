package testenv_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// These tests run real nginx (auth_request) and real Caddy (forward_auth,
// written out) in front of the echo upstream, asking a real Gatehouse
// signed in against a real provider, with raw HTTP: what a browser does,
// hop by hop. internal/e2e drives the same lab with Chromium.

func TestMain(m *testing.M) {
	// The example provider logs every request through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

const (
	pw      = devidp.DemoPassword
	aliceID = "300000000000000001" // admin, viewer
	bobID   = "300000000000000002" // viewer
)

// browser is a client whose lab host names resolve to loopback.
func browser(t *testing.T) *testenv.Browser {
	return testenv.NewBrowser(t).Resolve("." + testenv.LabDomain)
}

// get fetches u with a browser's navigation headers and extra ones.
func get(t *testing.T, b *testenv.Browser, u string, headers ...string) *testenv.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.Do(req)
}

// script is what a single-page app's fetch sends.
var script = []string{"Accept", "application/json", "Sec-Fetch-Mode", "cors"}

// echoed is what the echo upstream saw, from its answer.
func echoed(t *testing.T, r *testenv.Response) testenv.EchoRequest {
	t.Helper()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d, want 200 from the upstream: %s", r.URL, r.StatusCode, r.Body)
	}
	var e testenv.EchoRequest
	if err := json.Unmarshal([]byte(r.Body), &e); err != nil {
		t.Fatalf("not the echo upstream's answer: %q", r.Body)
	}
	return e
}

// signIn walks a protected app's sign-in: the app sends the browser to
// Gatehouse, its page's button to the provider, the provider back, and the
// callback to the page first asked for. It returns where the callback sent
// the browser.
func signIn(t *testing.T, lab *testenv.ForwardLab, b *testenv.Browser, deepLink, user string) string {
	t.Helper()
	toSignIn := get(t, b, deepLink)
	want := lab.Login + "/auth/signin?rd=" + url.QueryEscape(deepLink)
	if toSignIn.StatusCode != http.StatusFound || toSignIn.Header.Get("Location") != want {
		t.Fatalf("%s without a session: %s, want 302 to %s", deepLink, toSignIn, want)
	}
	page := b.Follow(toSignIn)
	action, fields := testenv.Form(t, page.Body)
	if fields.Get("callbackUrl") != deepLink {
		t.Fatalf("the sign-in page carries %v, want the deep link", fields)
	}
	back := b.LoginAtProvider(b.PostForm(lab.Login+action, fields), user, pw)
	landed := b.Get(back.Header.Get("Location"))
	if landed.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %s", landed)
	}
	return landed.Header.Get("Location")
}

// spoofed are identity headers a client sends hoping the upstream believes them.
var spoofed = []string{
	forward.HeaderUser, "evil-user", forward.HeaderEmail, "evil@example.com", forward.HeaderPreferredUsername, "evil",
	forward.HeaderGroups, "admin", forward.HeaderAccessToken, "evil-token", forward.HeaderAssertion, "forged",
	// and proxy headers naming another original request
	"X-Original-URL", "http://evil.example/", "X-Forwarded-Host", "evil.example", "X-Forwarded-Uri", "/spoofed", "X-Forwarded-Method", "DELETE",
}

// assertionAudience is the aud of an assertion (its signature is checked
// in internal/forwardauth; here: which host it was made for).
func assertionAudience(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion %q", token)
	}
	var c struct{ Aud string }
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Aud
}

// TestProxies_SignInRolesSpoofingAndSignOut is the whole story through
// each real proxy, raw HTTP.
func TestProxies_SignInRolesSpoofingAndSignOut(t *testing.T) {
	t.Parallel()
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{})
	for _, app := range []struct{ name, url string }{{"nginx", lab.NginxURL}, {"caddy", lab.CaddyURL}} {
		t.Run(app.name, func(t *testing.T) {
			t.Parallel()
			host := strings.TrimPrefix(app.url, "http://")
			const page = `/reports/2026?q=a%20b&x=1&dir=C:\tmp` // browsers send a query's backslash as it is
			deepLink := app.url + page
			alice := browser(t)

			t.Run("unauthenticated navigation: sign in, back on the deep link", func(t *testing.T) {
				if got := signIn(t, lab, alice, deepLink, "alice"); got != deepLink {
					t.Fatalf("landed on %q, want %q", got, deepLink)
				}
				e := echoed(t, get(t, alice, deepLink))
				if e.RequestURI != page || e.Header.Get(forward.HeaderUser) != aliceID ||
					e.Header.Get(forward.HeaderGroups) != "admin,viewer" || assertionAudience(t, e.Header.Get(forward.HeaderAssertion)) != host {
					t.Errorf("upstream got %s with %v", e.RequestURI, e.Header)
				}
			})

			t.Run("a script without a session gets 401, not a redirect", func(t *testing.T) {
				r := get(t, browser(t), app.url+"/api/items", script...)
				if r.StatusCode != http.StatusUnauthorized || r.Header.Get("Location") != "" || r.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("%s %v", r, r.Header)
				}
			})

			t.Run("identity headers the client sends never reach the upstream", func(t *testing.T) {
				e := echoed(t, get(t, alice, app.url+"/x", spoofed...))
				for h, want := range map[string]string{forward.HeaderUser: aliceID, forward.HeaderEmail: "alice@" + devidp.DemoOrgDomain,
					forward.HeaderPreferredUsername: "alice", forward.HeaderGroups: "admin,viewer", forward.HeaderAccessToken: ""} {
					if got := strings.Join(e.Header.Values(h), "|"); got != want {
						t.Errorf("upstream got %s = %q, want %q", h, got, want)
					}
				}
				if aud := assertionAudience(t, e.Header.Get(forward.HeaderAssertion)); aud != host {
					t.Errorf("assertion for %q: the client's proxy headers were believed", aud)
				}
			})

			t.Run("a missing role gets Gatehouse's 403 page", func(t *testing.T) {
				bob := browser(t)
				signIn(t, lab, bob, app.url+"/", "bob")
				r := get(t, bob, app.url+"/admin/settings")
				if r.StatusCode != http.StatusForbidden || !strings.Contains(r.Body, "You do not have access to this page") ||
					!strings.Contains(r.Body, lab.Login+"/static/app.css") {
					t.Fatalf("%s: %s", r, r.Body)
				}
				if r := get(t, bob, app.url+"/admin/settings", script...); r.StatusCode != http.StatusForbidden {
					t.Errorf("a script: %s", r)
				}
				// The admin area's own page, without a slash: nginx redirects
				// it to /admin/ (a prefix location that proxies), Caddy's
				// matcher names it.
				r = get(t, bob, app.url+"/admin")
				if r.StatusCode == http.StatusMovedPermanently && strings.HasSuffix(r.Header.Get("Location"), "/admin/") {
					r = bob.Follow(r)
				}
				if r.StatusCode != http.StatusForbidden {
					t.Errorf("/admin without the slash: %s", r)
				}
				if e := echoed(t, get(t, alice, app.url+"/admin/settings")); e.Header.Get(forward.HeaderUser) != aliceID {
					t.Errorf("alice on /admin/: %v", e.Header)
				}
			})

			t.Run("sign-out from the app ends access everywhere", func(t *testing.T) {
				b := browser(t)
				signIn(t, lab, b, app.url+"/", "alice")
				echoed(t, get(t, b, lab.NginxURL+"/"))
				echoed(t, get(t, b, lab.CaddyURL+"/"))    // one session for both apps
				page := b.Get(lab.Login + "/auth/logout") // the app's "Sign out" link
				action, fields := testenv.Form(t, page.Body)
				endSession := b.PostForm(lab.Login+action, fields)
				if endSession.StatusCode != http.StatusOK {
					t.Fatalf("sign-out: %s", endSession)
				}
				for _, u := range []string{lab.NginxURL + "/", lab.CaddyURL + "/"} {
					if r := get(t, b, u); r.StatusCode != http.StatusFound {
						t.Errorf("%s after sign-out: %s, want the redirect to sign in", u, r)
					}
				}
			})
		})
	}
}

// TestProxies_RefreshedCookieReachesTheBrowser: a session whose tokens
// are refreshed inside a decision gets a new cookie; through nginx
// (auth_request_set + add_header) and Caddy (copy_response_headers) the
// browser receives it. Caddy's forward_auth shorthand drops it.
func TestProxies_RefreshedCookieReachesTheBrowser(t *testing.T) {
	t.Parallel()
	clock := &testenv.Clock{}
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{IdP: testenv.IdPOptions{TokenTTL: 5 * time.Minute},
		Options: server.Options{Now: clock.Now, RefreshSkew: 30 * time.Second}})
	short := testenv.StartCaddy(t, testenv.CaddyOptions{Site: fmt.Sprintf(`
			forward_auth %s {
				uri /auth/forward?
				copy_headers %s
			}
			reverse_proxy %s
`, lab.Addr, strings.Join(forward.IdentityHeaders[:], " "), lab.Echo.Addr)})

	for _, tc := range []struct {
		name, url string
		passes    bool
	}{
		{"nginx", lab.NginxURL + "/", true},
		{"caddy", lab.CaddyURL + "/", true},
		{"caddy forward_auth shorthand", "http://short." + testenv.LabDomain + strings.TrimPrefix(short.Addr, "127.0.0.1") + "/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := browser(t)
			signIn(t, lab, b, lab.NginxURL+"/", "alice")
			old := b.Cookie(lab.Login, "gatehouse")
			refreshes := lab.IdP.Refreshes()
			clock.Advance(6 * time.Minute) // the access token is past its expiry
			defer clock.Advance(-6 * time.Minute)
			r := get(t, b, tc.url)
			echoed(t, r)
			if lab.IdP.Refreshes() != refreshes+1 {
				t.Fatalf("refreshes %d → %d: none inside the decision", refreshes, lab.IdP.Refreshes())
			}
			var fresh *http.Cookie
			for _, c := range r.Cookies() {
				if c.Name == "gatehouse" {
					fresh = c
				}
			}
			if !tc.passes {
				if fresh != nil {
					t.Fatalf("the shorthand passed Set-Cookie: the documented evidence has changed")
				}
				return
			}
			if fresh == nil || fresh.Value == old.Value || fresh.Domain != testenv.LabDomain || fresh.MaxAge <= 0 || !fresh.HttpOnly {
				t.Fatalf("new cookie %+v (Set-Cookie %q), want a new value for Domain %s", fresh, r.Header["Set-Cookie"], testenv.LabDomain)
			}
			if got := b.Cookie(lab.Login, "gatehouse"); got == nil || got.Value != fresh.Value {
				t.Fatal("the browser did not keep the new cookie for Gatehouse's host too")
			}
		})
	}
}

// TestNginx_ContractEvidence records what nginx does that the documented
// configuration relies on, with the real endpoints.
func TestNginx_ContractEvidence(t *testing.T) {
	t.Parallel()
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{})
	nginx := testenv.StartNginx(t, testenv.NginxOptions{HTTP: testenv.NginxUpstream(lab.Addr), Server: fmt.Sprintf(`
    location = /_wrong {
      internal;
      proxy_pass http://gatehouse/auth/forward;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }
    location = /_unset {
      internal;
      proxy_pass http://gatehouse/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }
    location /wrong/ {
      auth_request /_wrong;
      proxy_pass http://%[1]s;
    }
    location / {
      auth_request /_unset;
%[2]s      proxy_pass http://%[1]s;
    }
`, lab.Echo.Addr, testenv.NginxIdentityCopies("      "))})
	url := "http://other." + testenv.LabDomain + strings.TrimPrefix(nginx.Addr, "127.0.0.1")

	t.Run("a redirect from the auth request is a 500 in nginx: hence /auth/verify", func(t *testing.T) {
		r := get(t, browser(t), url+"/wrong/x")
		if r.StatusCode != http.StatusInternalServerError || r.Header.Get("Location") != "" {
			t.Fatalf("%s", r)
		}
		if !strings.Contains(nginx.Logs(), "auth request unexpected status: 302") {
			t.Errorf("nginx did not log why:\n%s", nginx.Logs())
		}
	})

	t.Run("without proxy_set_header X-Original-URL the client's own arrives: the setting is required", func(t *testing.T) {
		b := browser(t)
		signIn(t, lab, b, lab.NginxURL+"/", "alice")
		e := echoed(t, get(t, b, url+"/x", "X-Original-URL", "https://evil.example/"))
		if aud := assertionAudience(t, e.Header.Get(forward.HeaderAssertion)); aud != "evil.example" {
			t.Fatalf("assertion for %q; the evidence has changed", aud)
		}
	})
}

// TestCaddy_ContractEvidence records what Caddy's forward_auth shorthand
// does that the documented configuration avoids, with the real endpoints.
func TestCaddy_ContractEvidence(t *testing.T) {
	t.Parallel()
	lab := testenv.StartForwardLab(t, testenv.ForwardLabOptions{})
	caddy := testenv.StartCaddy(t, testenv.CaddyOptions{Site: fmt.Sprintf(`
			forward_auth %s {
				uri /auth/forward
				copy_headers %s
			}
			reverse_proxy %s
`, lab.Addr, forward.HeaderUser, lab.Echo.Addr)})
	url := "http://other." + testenv.LabDomain + strings.TrimPrefix(caddy.Addr, "127.0.0.1")
	b := browser(t)
	signIn(t, lab, b, lab.CaddyURL+"/", "bob")

	t.Run("uri without a question mark passes the client's query: refused, never read as rules", func(t *testing.T) {
		if r := get(t, b, url+"/x?roles=viewer"); r.StatusCode != http.StatusInternalServerError {
			t.Fatalf("%s: %s", r, r.Body)
		}
		if r := get(t, b, url+"/x"); r.StatusCode != http.StatusOK {
			t.Fatalf("without a query: %s", r)
		}
	})

	t.Run("a header left out of copy_headers reaches the upstream as the client wrote it", func(t *testing.T) {
		e := echoed(t, get(t, b, url+"/x", forward.HeaderGroups, "admin"))
		if e.Header.Get(forward.HeaderGroups) != "admin" || e.Header.Get(forward.HeaderUser) != bobID {
			t.Fatalf("upstream got %v; the evidence that every header must be listed has changed", e.Header)
		}
	})
}

// TestProxies_RunSideBySideAndStop: several proxies of both kinds run at
// once, each on its own port, and Stop really ends them.
func TestProxies_RunSideBySideAndStop(t *testing.T) {
	t.Parallel()
	echo := testenv.StartEcho(t)
	var proxies []*testenv.Proxy
	for i := range 6 {
		if i%2 == 0 {
			proxies = append(proxies, testenv.StartNginx(t, testenv.NginxOptions{Server: "location / { proxy_pass http://" + echo.Addr + "; }"}))
		} else {
			proxies = append(proxies, testenv.StartCaddy(t, testenv.CaddyOptions{Site: "reverse_proxy " + echo.Addr}))
		}
	}
	seen := map[string]bool{}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, p := range proxies {
		if seen[p.Addr] {
			t.Fatalf("two proxies on %s", p.Addr)
		}
		seen[p.Addr] = true
		resp, err := client.Get(p.URL + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e testenv.EchoRequest
		if json.Unmarshal(body, &e) != nil || e.RequestURI != "/ping" {
			t.Fatalf("%s %s: echo got %q", p.Name, p.URL, body)
		}
	}
	for _, p := range proxies[:2] {
		p.Stop()
		if conn, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections on %s after Stop", p.Name, p.Addr)
		}
	}
}
