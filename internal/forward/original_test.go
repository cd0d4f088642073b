package forward

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var trusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}

const (
	proxyPeer  = "10.1.2.3:40000"
	clientPeer = "203.0.113.9:50000"
)

// request builds an auth request as a proxy at peer sends it.
func request(method, target, peer string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = peer
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			r.Host = headers[i+1]
			continue
		}
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func TestRead_OriginalURLPerAdapter(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		adapter Adapter
		r       *http.Request
		want    Original
		err     error
	}{
		{"ingress-nginx X-Original-URL and method", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://Grafana.Example.com/d/abc?orgId=1", "X-Original-Method", "POST",
				"X-Forwarded-Host", "grafana.example.com"),
			Original{Method: "POST", Scheme: "https", Host: "grafana.example.com", URI: "/d/abc?orgId=1", Known: true}, nil},
		{"X-Original-URL without path", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "http://app.example.com:8080"),
			Original{Method: "GET", Scheme: "http", Host: "app.example.com:8080", URI: "/", Known: true}, nil},
		{"X-Original-URL query without path", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com?x=1"),
			Original{}, ErrBadHost},
		{"a name's trailing dot taken off", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://App.Example.com./x"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/x", Known: true}, nil},
		{"a trailing dot before the port taken off", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com.:8443/x"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com:8443", URI: "/x", Known: true}, nil},
		{"a port above 65535", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com:65536/x"),
			Original{}, ErrBadHost},
		{"the highest port", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com:65535/x"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com:65535", URI: "/x", Known: true}, nil},
		{"a label starting with a hyphen", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://-app.example.com/x"),
			Original{}, ErrBadHost},
		{"a label ending with a hyphen", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app-.example.com/x"),
			Original{}, ErrBadHost},
		{"a label of 64 characters", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://"+strings.Repeat("a", 64)+".example.com/x"),
			Original{}, ErrBadHost},
		{"an empty label", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app..example.com/x"),
			Original{}, ErrBadHost},
		{"default port dropped", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com:443/x"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/x", Known: true}, nil},
		{"plain nginx with X-Forwarded headers", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Forwarded-Proto", "http", "X-Forwarded-Host", "127.0.0.1:8081", "X-Forwarded-Uri", "/deep/link?a=b"),
			Original{Method: "GET", Scheme: "http", Host: "127.0.0.1:8081", URI: "/deep/link?a=b", Known: true}, nil},
		{"client's X-Original-URL through the ingress to Gatehouse's own host", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://grafana.example.com/", "X-Forwarded-Host", "login.example.com"),
			Original{}, ErrHostMismatch},
		{"X-Original-URL with userinfo", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://a@evil.example/"),
			Original{}, ErrBadHost},
		{"X-Original-URL with a raw fragment: decided, never returned to", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com/public#/../admin"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/public#/../admin", Known: true, noReturn: true}, nil},
		{"X-Original-URL with a javascript scheme", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "javascript:alert(1)"),
			Original{}, ErrBadURL},
		{"X-Original-URL twice", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://a.example.com/", "X-Original-URL", "https://b.example.com/"),
			Original{}, ErrAmbiguous},
		{"nginx subrequest with no original at all", Verify,
			request("GET", "/auth/verify", proxyPeer),
			Original{Method: "GET"}, nil},

		{"Traefik/Caddy forwarded headers", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Method", "DELETE", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/api/items/7"),
			Original{Method: "DELETE", Scheme: "https", Host: "app.example.com", URI: "/api/items/7", Known: true}, nil},
		{"missing proto means https", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/", Known: true}, nil},
		{"no X-Forwarded-Uri: not a forward-auth request", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "login.example.com", "X-Forwarded-Proto", "https"),
			Original{Method: "GET"}, nil},
		{"absolute X-Forwarded-Uri", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "https://evil.example/"),
			Original{}, ErrBadURL},
		{"X-Forwarded-Uri with a space: decided, never returned to", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/a b"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/a b", Known: true, noReturn: true}, nil},
		{"X-Forwarded-Uri with raw UTF-8: decided, never returned to", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/caf\xc3\xa9"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/caf\xc3\xa9", Known: true, noReturn: true}, nil},
		{"X-Forwarded-Uri longer than a return URL may be: decided, never returned to", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/"+strings.Repeat("a", maxURI)),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/" + strings.Repeat("a", maxURI), Known: true, noReturn: true}, nil},
		{"X-Forwarded-Uri that is no request-target", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "app/x"),
			Original{}, ErrBadURL},
		{"X-Forwarded-Uri with a stray percent sign in the query (a browser sends one as typed): decided, never returned to", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/search?q=100%"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/search?q=100%", Known: true, noReturn: true}, nil},
		{"X-Forwarded-Uri with a broken escape: decided, never returned to", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/a%2?b=%zz"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/a%2?b=%zz", Known: true, noReturn: true}, nil},
		{"X-Forwarded-Uri with escapes", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/100%25/a%2Fb?q=%c3%a9"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/100%25/a%2Fb?q=%c3%a9", Known: true}, nil},
		{"X-Original-URL with a stray percent sign: decided, never returned to", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://app.example.com/%"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/%", Known: true, noReturn: true}, nil},
		{"host list", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com, evil.example", "X-Forwarded-Uri", "/"),
			Original{}, ErrBadHost},
		{"host with userinfo", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com@evil.example", "X-Forwarded-Uri", "/"),
			Original{}, ErrBadHost},
		{"host with percent-escape", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "evil.example%2fapp.example.com", "X-Forwarded-Uri", "/"),
			Original{}, ErrBadHost},
		{"proto neither http nor https", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Proto", "javascript", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/"),
			Original{}, ErrBadURL},
		{"bad method", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Method", "GET /x", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/"),
			Original{}, ErrBadMethod},
		{"IPv6 host", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Proto", "http", "X-Forwarded-Host", "[::1]:8080", "X-Forwarded-Uri", "/"),
			Original{Method: "GET", Scheme: "http", Host: "[::1]:8080", URI: "/", Known: true}, nil},
		{"IPv4-mapped peer is the proxy", Forward,
			request("GET", "/auth/forward", "[::ffff:10.1.2.3]:4000", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/x"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/x", Known: true}, nil},

		{"Envoy path_prefix suffix, method and Host kept", Envoy,
			request("POST", "/auth/forward/api/v1/items?limit=5&x=%2F", proxyPeer, "Host", "api.example.com"),
			Original{Method: "POST", Scheme: "https", Host: "api.example.com", URI: "/api/v1/items?limit=5&x=%2F", Known: true}, nil},
		{"Envoy with rules in the prefix", Envoy,
			request("GET", "/auth/forward;roles=admin/admin/users", proxyPeer, "Host", "app.example.com:8443", "X-Forwarded-Proto", "https"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com:8443", URI: "/admin/users", Known: true}, nil},
		{"Envoy root path", Envoy,
			request("HEAD", "/auth/forward/", proxyPeer, "Host", "app.example.com"),
			Original{Method: "HEAD", Scheme: "https", Host: "app.example.com", URI: "/", Known: true}, nil},
		{"Traefik pointed at the Envoy path", Envoy,
			request("GET", "/auth/forward/x", proxyPeer, "Host", "gatehouse:3000", "X-Forwarded-Uri", "/x"),
			Original{}, ErrNotEnvoy},
		{"a proxy pointed at the Envoy path with X-Forwarded-Uri twice", Envoy,
			request("GET", "/auth/forward/x", proxyPeer, "Host", "gatehouse:3000", "X-Forwarded-Uri", "/x", "X-Forwarded-Uri", "/y"),
			Original{}, ErrAmbiguous},
		{"Envoy with a trailing-dot Host", Envoy,
			request("GET", "/auth/forward/x", proxyPeer, "Host", "App.Example.com.", "X-Forwarded-Proto", "https"),
			Original{Method: "GET", Scheme: "https", Host: "app.example.com", URI: "/x", Known: true}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Read(tc.r, tc.adapter, trusted)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Read error = %v, want %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("Read = %+v\nwant   %+v", got, tc.want)
			}
		})
	}
}

// TestRead_UntrustedPeersHeadersAreIgnored: from a peer outside
// TRUSTED_PROXIES (or with none configured), no proxy header is believed —
// GHSA-7x63-xv5r-3p2x — and the one that was ignored is named for the log.
func TestRead_UntrustedPeersHeadersAreIgnored(t *testing.T) {
	t.Parallel()
	spoof := []string{"X-Original-URL", "https://grafana.example.com/admin", "X-Original-Method", "GET",
		"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "grafana.example.com", "X-Forwarded-Uri", "/admin"}
	for _, tc := range []struct {
		adapter Adapter
		target  string
		trusted []netip.Prefix
		peer    string
	}{
		{Verify, "/auth/verify", trusted, clientPeer},
		{Forward, "/auth/forward", trusted, clientPeer},
		{Envoy, "/auth/forward/admin", trusted, clientPeer},
		{Forward, "/auth/forward", nil, proxyPeer}, // no TRUSTED_PROXIES: nobody is a proxy
		{Verify, "/auth/verify", trusted, "@"},     // not a TCP peer
	} {
		r := request("POST", tc.target, tc.peer, spoof...)
		r.Host = "grafana.example.com"
		got, err := Read(r, tc.adapter, tc.trusted)
		if err != nil {
			t.Fatalf("%v from %s: %v", tc.adapter, tc.peer, err)
		}
		if got.Known || got.Host != "" || got.URI != "" || got.Method != "POST" || got.URL() != "" {
			t.Errorf("%v from %s: believed spoofed headers: %+v", tc.adapter, tc.peer, got)
		}
		if got.Ignored == "" {
			t.Errorf("%v from %s: the ignored header is not named", tc.adapter, tc.peer)
		}
	}
}

func TestOriginal_URL(t *testing.T) {
	t.Parallel()
	o := Original{Scheme: "https", Host: "app.example.com", URI: "/a?b=c", Known: true}
	if got := o.URL(); got != "https://app.example.com/a?b=c" {
		t.Fatalf("URL = %q", got)
	}
}

// TestRead_BackslashIsTheClientsNotAMisconfiguration: browsers send a
// backslash unescaped in a query (?q=C:\dir), and any other client may
// send one in the path; every proxy passes it on. Neither is a proxy's
// misconfiguration: the original is read as sent. The return trip keeps
// the query's; one in the path (which a browser sends as "/") leaves no
// URL to return to, rather than a "/\evil.example" to be sent back to.
func TestRead_BackslashIsTheClientsNotAMisconfiguration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		adapter Adapter
		r       *http.Request
		uri     string // Original.URI
		url     string // Original.URL(), the return trip
	}{
		{"nginx X-Original-URL, in the query", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", `https://app.example.com/search?q=C:\dir&re=\d+`, "X-Forwarded-Host", "app.example.com"),
			`/search?q=C:\dir&re=\d+`, `https://app.example.com/search?q=C:\dir&re=\d+`},
		{"nginx X-Original-URL, in the path", Verify,
			request("GET", "/auth/verify", proxyPeer, "X-Original-URL", `https://app.example.com/\evil.example/x?q=\`, "X-Forwarded-Host", "app.example.com"),
			`/\evil.example/x?q=\`, ""},
		{"Traefik/Caddy X-Forwarded-Uri, in the query", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", `/search?q=C:\dir`),
			`/search?q=C:\dir`, `https://app.example.com/search?q=C:\dir`},
		{"Traefik/Caddy X-Forwarded-Uri, in the path", Forward,
			request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", `/\evil.example/`),
			`/\evil.example/`, ""},
		{"Envoy path suffix, in the query", Envoy,
			request("GET", `/auth/forward/search?q=C:\dir`, proxyPeer, "Host", "app.example.com"),
			`/search?q=C:\dir`, `https://app.example.com/search?q=C:\dir`},
		{"Envoy path suffix, in the path", Envoy,
			request("GET", `/auth/forward;roles=a/a\b`, proxyPeer, "Host", "app.example.com"),
			`/a\b`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Read(tc.r, tc.adapter, trusted)
			if err != nil {
				t.Fatalf("Read error = %v, want the original as sent", err)
			}
			if !got.Known || got.Host != "app.example.com" || got.URI != tc.uri {
				t.Fatalf("Read = %+v, want app.example.com and URI %q", got, tc.uri)
			}
			if u := got.URL(); u != tc.url {
				t.Fatalf("URL = %q, want %q", u, tc.url)
			}
		})
	}
}

func TestAdapterOf(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]Adapter{
		"/auth/verify":               Verify,
		"/auth/forward":              Forward,
		"/auth/forward/":             Envoy,
		"/auth/forward/app?x=1":      Envoy,
		"/auth/forward;roles=a/x":    Envoy,
		"/auth/forwarded":            0,
		"/auth/verify/x":             0,
		"/auth/forward%2Fx":          0,
		"/auth/forward;roles=a?x=/y": Envoy,
	} {
		if got := AdapterOf(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("AdapterOf(%q) = %v, want %v", path, got, want)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	for _, tc := range []struct {
		name    string
		adapter Adapter
		r       *http.Request
	}{
		{"Verify", Verify, request("GET", "/auth/verify", proxyPeer, "X-Original-URL", "https://grafana.example.com/d/abc?orgId=1", "X-Original-Method", "GET", "X-Forwarded-Host", "grafana.example.com")},
		{"Forward", Forward, request("GET", "/auth/forward", proxyPeer, "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/api/items/7")},
		{"Envoy", Envoy, request("GET", "/auth/forward;roles=admin/admin/users", proxyPeer, "Host", "app.example.com")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if o, err := Read(tc.r, tc.adapter, trusted); err != nil || !o.Known {
					b.Fatal(o, err)
				}
			}
		})
	}
}
