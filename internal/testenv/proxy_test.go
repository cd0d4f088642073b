package testenv_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// stubAuth is a STAND-IN for Gatehouse's forward-auth decision, used only
// to prove the proxy harness and to record each real proxy's contract; the
// real /auth/verify and /auth/forward handlers replace it once they exist.
// It does what the decision will do with everything but the session: reads
// the original request with forward.Read (trusting loopback, where the
// proxies run) and the rules with forward.RulesOf, then answers what the
// client asked for in X-Test-Answer: 200 with identity headers written by
// forward.WriteIdentity, 401, 403 or 302. On /auth/forward a missing
// session ("401") becomes a 302 to sign in for a navigation, as it will.
type stubAuth struct {
	mu   sync.Mutex
	seen []authCall
}

type authCall struct {
	Request  testenv.EchoRequest
	Original forward.Original
	ReadErr  error
	Rules    string
	RulesErr error
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

const signIn = "http://login.test/auth/signin"

func (s *stubAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a := forward.AdapterOf(r)
	o, readErr := forward.Read(r, a, loopback)
	rules, rulesErr := forward.RulesOf(r, a, o)
	s.mu.Lock()
	s.seen = append(s.seen, authCall{
		Request:  testenv.EchoRequest{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: string(body)},
		Original: o, ReadErr: readErr, Rules: rules.String(), RulesErr: rulesErr,
	})
	s.mu.Unlock()
	answer := r.Header.Get("X-Test-Answer")
	if a != forward.Verify && answer == "401" && forward.IsNavigation(o.Method, r.Header) {
		answer = "302"
	}
	switch answer {
	case "401":
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse"`)
		http.Error(w, "stub: not signed in", http.StatusUnauthorized)
	case "403":
		http.Error(w, "stub: missing role", http.StatusForbidden)
	case "302":
		http.Redirect(w, r, signIn+"?rd="+url.QueryEscape(o.URL()), http.StatusFound)
	default:
		forward.WriteIdentity(w.Header(), forward.Identity{Subject: "stub-user", Roles: []string{"admin", "ops"}}, "stub.assertion", false)
		w.WriteHeader(http.StatusOK)
	}
}

func (s *stubAuth) last(t *testing.T) authCall {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) == 0 {
		t.Fatal("the auth endpoint was never called")
	}
	return s.seen[len(s.seen)-1]
}

func (s *stubAuth) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func startStub(t *testing.T) (*stubAuth, string) {
	t.Helper()
	s := &stubAuth{}
	return s, testenv.ServeLoopback(t, s)
}

// do sends one request through the proxy, without following redirects.
func do(t *testing.T, method, u, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func echoed(t *testing.T, resp *http.Response, body string) testenv.EchoRequest {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200 from the upstream: %s", resp.StatusCode, body)
	}
	var e testenv.EchoRequest
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not the echo upstream's answer: %q", body)
	}
	return e
}

// logAuthRequest writes what the proxy sent to the auth endpoint into the
// test log (run with -v): the evidence the adapters are built on.
func logAuthRequest(t *testing.T, proxy string, c authCall) {
	t.Helper()
	var names []string
	for k := range c.Request.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%s auth request: %s %s (Host %s, body %q)\n", proxy, c.Request.Method, c.Request.RequestURI, c.Request.Host, c.Request.Body)
	for _, k := range names {
		fmt.Fprintf(&b, "  %s: %q\n", k, c.Request.Header[k])
	}
	t.Log(b.String())
}

// spoofed are identity headers a client sends hoping the upstream believes them.
var spoofed = []string{
	forward.HeaderUser, "evil-user", forward.HeaderEmail, "evil@example.com", forward.HeaderPreferredUsername, "evil",
	forward.HeaderGroups, "admin", forward.HeaderAccessToken, "evil-token", forward.HeaderAssertion, "forged",
}

// identityCopies are the nginx directives that copy every identity header
// from the auth answer to the upstream request.
func identityCopies() string {
	var b strings.Builder
	for i, h := range forward.IdentityHeaders {
		fmt.Fprintf(&b, "      auth_request_set $gh%d $upstream_http_%s;\n      proxy_set_header %s $gh%d;\n", i, strings.ToLower(strings.ReplaceAll(h, "-", "_")), h, i)
	}
	return b.String()
}

// TestNginx_AuthRequestContract runs Debian's nginx with auth_request in
// front of the echo upstream and the stub decision, and checks the
// contract the /auth/verify adapter relies on.
func TestNginx_AuthRequestContract(t *testing.T) {
	t.Parallel()
	stub, stubAddr := startStub(t)
	echo := testenv.StartEcho(t)
	verify := func(name, extra string) string {
		return fmt.Sprintf(`
    location = %s {
      internal;
      proxy_pass http://%s/auth/verify?roles=admin;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
%s    }
`, name, stubAddr, extra)
	}
	nginx := testenv.StartNginx(t, testenv.NginxOptions{Server: verify("/_gatehouse", `      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
`) + verify("/_gatehouse_unset", "") + fmt.Sprintf(`
    location = /_gatehouse_signin {
      internal;
      proxy_pass http://%[1]s/auth/forward;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Method $request_method;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Uri $request_uri;
    }
    location /unset/ {
      auth_request /_gatehouse_unset;
      proxy_pass http://%[2]s;
    }
    location / {
      auth_request /_gatehouse;
%[3]s      error_page 401 = /_gatehouse_signin;
      proxy_pass http://%[2]s;
    }
`, stubAddr, echo.Addr, identityCopies())})

	t.Run("200 passes, identity headers copied, the client's replaced or removed", func(t *testing.T) {
		resp, body := do(t, "POST", nginx.URL+"/deep/link?roles=guest&x=1", "payload",
			append([]string{"X-Test-Answer", "200", "Cookie", "__Host-gatehouse=abc", "Content-Type", "text/plain"}, spoofed...)...)
		e := echoed(t, resp, body)
		want := map[string]string{forward.HeaderUser: "stub-user", forward.HeaderGroups: "admin,ops", forward.HeaderAssertion: "stub.assertion"}
		for _, h := range forward.IdentityHeaders {
			if got := strings.Join(e.Header.Values(h), "|"); got != want[h] {
				t.Errorf("upstream got %s = %q, want %q (empty answers must remove the client's copy)", h, got, want[h])
			}
		}
		if e.Method != "POST" || e.Body != "payload" || e.RequestURI != "/deep/link?roles=guest&x=1" || e.Header.Get("Cookie") != "__Host-gatehouse=abc" {
			t.Errorf("upstream got %s %s body %q cookie %q", e.Method, e.RequestURI, e.Body, e.Header.Get("Cookie"))
		}
		c := stub.last(t)
		logAuthRequest(t, "nginx", c)
		// nginx's subrequest: always GET, the operator's URI and query (never
		// the client's), no body, the client's headers plus the configured ones.
		if c.Request.Method != "GET" || c.Request.RequestURI != "/auth/verify?roles=admin" || c.Request.Body != "" {
			t.Errorf("auth request %s %s body %q", c.Request.Method, c.Request.RequestURI, c.Request.Body)
		}
		if c.Request.Header.Get("Cookie") != "__Host-gatehouse=abc" || c.Request.Header.Get("Content-Length") != "" {
			t.Errorf("auth request cookie %q, content-length %q", c.Request.Header.Get("Cookie"), c.Request.Header.Get("Content-Length"))
		}
		wantURL := nginx.URL + "/deep/link?roles=guest&x=1"
		if c.ReadErr != nil || !c.Original.Known || c.Original.URL() != wantURL || c.Original.Method != "POST" {
			t.Errorf("forward.Read on nginx's request = %+v, %v; want %s POST", c.Original, c.ReadErr, wantURL)
		}
		if c.RulesErr != nil || c.Rules != "roles=admin" {
			t.Errorf("rules = %q, %v; want the operator's roles=admin", c.Rules, c.RulesErr)
		}
	})

	t.Run("401 becomes a 302 to sign in with the deep link, via error_page and /auth/forward", func(t *testing.T) {
		resp, _ := do(t, "GET", nginx.URL+"/deep/link?a=1&b=2", "", "X-Test-Answer", "401",
			"Accept", "text/html", "Sec-Fetch-Mode", "navigate")
		want := signIn + "?rd=" + url.QueryEscape(nginx.URL+"/deep/link?a=1&b=2")
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Fatalf("got %d Location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		logAuthRequest(t, "nginx error_page", stub.last(t))
	})

	t.Run("401 for a script stays 401", func(t *testing.T) {
		resp, _ := do(t, "GET", nginx.URL+"/api/items", "", "X-Test-Answer", "401", "Accept", "application/json", "Sec-Fetch-Mode", "cors")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("got %d, want 401", resp.StatusCode)
		}
	})

	t.Run("403 reaches the client as 403", func(t *testing.T) {
		resp, _ := do(t, "GET", nginx.URL+"/admin", "", "X-Test-Answer", "403")
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %d, want 403", resp.StatusCode)
		}
	})

	t.Run("302 from the auth endpoint is an error in nginx, never a redirect", func(t *testing.T) {
		resp, _ := do(t, "GET", nginx.URL+"/x", "", "X-Test-Answer", "302")
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Location") != "" {
			t.Fatalf("got %d Location %q, want 500 without Location", resp.StatusCode, resp.Header.Get("Location"))
		}
		if !strings.Contains(nginx.Logs(), "auth request unexpected status: 302") {
			t.Errorf("nginx did not log why:\n%s", nginx.Logs())
		}
	})

	t.Run("without proxy_set_header X-Original-URL the client's own arrives", func(t *testing.T) {
		n := stub.calls()
		resp, body := do(t, "GET", nginx.URL+"/unset/x", "", "X-Test-Answer", "200", "X-Original-URL", "https://evil.example/")
		echoed(t, resp, body)
		c := stub.last(t)
		if stub.calls() != n+1 || c.Request.Header.Get("X-Original-Url") != "https://evil.example/" {
			t.Fatalf("auth request X-Original-URL = %q", c.Request.Header.Get("X-Original-Url"))
		}
	})
}

// caddySite is a forward_auth configuration: the operator's uri, the
// headers copied upstream, then the echo upstream.
func caddySite(matcher, stubAddr, uri string, copies []string) string {
	return fmt.Sprintf(`
			forward_auth %s %s {
				uri %s
				copy_headers %s
			}
`, matcher, stubAddr, uri, strings.Join(copies, " "))
}

// TestCaddy_ForwardAuthContract runs Caddy's forward_auth in front of the
// echo upstream and the stub decision, and checks the contract the
// /auth/forward adapter relies on.
func TestCaddy_ForwardAuthContract(t *testing.T) {
	t.Parallel()
	stub, stubAddr := startStub(t)
	echo := testenv.StartEcho(t)
	all := forward.IdentityHeaders[:]
	withoutToken := []string{forward.HeaderUser, forward.HeaderEmail, forward.HeaderPreferredUsername, forward.HeaderGroups, forward.HeaderAssertion}
	caddy := testenv.StartCaddy(t, testenv.CaddyOptions{Site: `
			@noquery path /noquery/*
			@query not path /noquery/*` +
		caddySite("@noquery", stubAddr, "/auth/forward", withoutToken) +
		caddySite("@query", stubAddr, "/auth/forward?roles=admin", all) +
		fmt.Sprintf("\t\t\treverse_proxy %s\n", echo.Addr)})

	t.Run("200 passes, identity headers copied, the client's replaced or removed", func(t *testing.T) {
		resp, body := do(t, "PUT", caddy.URL+"/deep/link?roles=guest&x=1", "payload",
			append([]string{"X-Test-Answer", "200", "Cookie", "__Host-gatehouse=abc",
				"X-Forwarded-Host", "evil.example", "X-Forwarded-Uri", "/spoofed", "X-Forwarded-Proto", "https"}, spoofed...)...)
		e := echoed(t, resp, body)
		want := map[string]string{forward.HeaderUser: "stub-user", forward.HeaderGroups: "admin,ops", forward.HeaderAssertion: "stub.assertion"}
		for _, h := range forward.IdentityHeaders {
			if got := strings.Join(e.Header.Values(h), "|"); got != want[h] {
				t.Errorf("upstream got %s = %q, want %q", h, got, want[h])
			}
		}
		if e.Method != "PUT" || e.Body != "payload" || e.RequestURI != "/deep/link?roles=guest&x=1" {
			t.Errorf("upstream got %s %s body %q", e.Method, e.RequestURI, e.Body)
		}
		c := stub.last(t)
		logAuthRequest(t, "caddy", c)
		// Caddy's auth request: GET, the configured uri (its query replaces
		// the client's), the original in X-Forwarded-*, which Caddy
		// overwrites whatever the client sent.
		if c.Request.Method != "GET" || c.Request.RequestURI != "/auth/forward?roles=admin" {
			t.Errorf("auth request %s %s", c.Request.Method, c.Request.RequestURI)
		}
		for h, want := range map[string]string{"X-Forwarded-Method": "PUT", "X-Forwarded-Uri": "/deep/link?roles=guest&x=1",
			"X-Forwarded-Host": caddy.Addr, "X-Forwarded-Proto": "http", "Cookie": "__Host-gatehouse=abc"} {
			if got := strings.Join(c.Request.Header.Values(h), "|"); got != want {
				t.Errorf("auth request %s = %q, want %q", h, got, want)
			}
		}
		if c.ReadErr != nil || c.Original.URL() != caddy.URL+"/deep/link?roles=guest&x=1" || c.Original.Method != "PUT" {
			t.Errorf("forward.Read on Caddy's request = %+v, %v", c.Original, c.ReadErr)
		}
		if c.RulesErr != nil || c.Rules != "roles=admin" {
			t.Errorf("rules = %q, %v; want roles=admin", c.Rules, c.RulesErr)
		}
	})

	t.Run("uri without a query passes the client's query: refused as rules", func(t *testing.T) {
		resp, body := do(t, "GET", caddy.URL+"/noquery/x?roles=guest", "", append([]string{"X-Test-Answer", "200"}, spoofed...)...)
		e := echoed(t, resp, body)
		c := stub.last(t)
		if c.Request.RequestURI != "/auth/forward?roles=guest" {
			t.Fatalf("Caddy sent %q; the evidence for ErrClientQuery has changed", c.Request.RequestURI)
		}
		if c.RulesErr != forward.ErrClientQuery {
			t.Errorf("rules = %q, %v; want ErrClientQuery", c.Rules, c.RulesErr)
		}
		// A header left out of copy_headers reaches the upstream as the
		// client wrote it: every identity header must be listed.
		if got := e.Header.Get(forward.HeaderAccessToken); got != "evil-token" {
			t.Errorf("unlisted %s = %q; the evidence that every header must be listed has changed", forward.HeaderAccessToken, got)
		}
	})

	t.Run("302 from the auth endpoint reaches the browser", func(t *testing.T) {
		resp, _ := do(t, "GET", caddy.URL+"/deep?a=1", "", "X-Test-Answer", "401", "Accept", "text/html,*/*;q=0.8", "Sec-Fetch-Mode", "navigate")
		want := signIn + "?rd=" + url.QueryEscape(caddy.URL+"/deep?a=1")
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
			t.Fatalf("got %d Location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})

	t.Run("401 with WWW-Authenticate reaches a script as it is", func(t *testing.T) {
		resp, body := do(t, "GET", caddy.URL+"/api", "", "X-Test-Answer", "401", "Accept", "application/json", "Sec-Fetch-Mode", "cors")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="gatehouse"` || !strings.Contains(body, "stub: not signed in") {
			t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	})

	t.Run("403 reaches the client with the auth endpoint's body", func(t *testing.T) {
		resp, body := do(t, "GET", caddy.URL+"/admin", "", "X-Test-Answer", "403")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "stub: missing role") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
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
	for _, p := range proxies {
		if seen[p.Addr] {
			t.Fatalf("two proxies on %s", p.Addr)
		}
		seen[p.Addr] = true
		resp, body := do(t, "GET", p.URL+"/ping", "")
		if e := echoed(t, resp, body); e.RequestURI != "/ping" {
			t.Fatalf("%s %s: echo got %q", p.Name, p.URL, e.RequestURI)
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
