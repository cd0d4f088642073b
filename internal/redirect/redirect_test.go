package redirect

import (
	"strings"
	"testing"
)

func mustPolicy(t testing.TB, callback, hosts string) *Policy {
	t.Helper()
	hs, err := ParseHosts(hosts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(callback, hs, "/profile")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const prodHosts = "grafana.example.com, .tools.example.com, app.example.com:8443, xn--bcher-kva.example.com"

// TestResolve_OpenRedirectClasses turns every open-redirect class from
// oauth2-proxy's advisories and its test list into cases: each must end
// at the fallback, while the look-alike legitimate form next to it passes.
//
//   - GHSA-qqxw-m5fj-f7gv (CVE-2020-5233): "/\evil" read as "//evil" by browsers
//   - GHSA-j7px-6hwj-hpjg (CVE-2020-11053): whitespace between the slashes
//   - GHSA-5m6c-jp6f-2vcv (CVE-2020-4037): dot segments and mixed slashes
//   - GHSA-4mf2-f3wh-gvf2 (CVE-2021-21291): allowed subdomain suffix matched
//     by a longer, foreign name
//   - its testdata/openredirects.txt: userinfo, encodings, IP obfuscations,
//     javascript:/data:, fragments and queries hiding the real host
func TestResolve_OpenRedirectClasses(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, "https://login.example.com/auth/callback", prodHosts)
	cases := []struct {
		class, in, want string // want "" = the fallback
	}{
		// Local paths, as before.
		{"local path", "/profile?tab=claims", "/profile?tab=claims"},
		{"local deep link", "/a/b/c?x=1&y=2", "/a/b/c?x=1&y=2"},
		{"backslash after slash (CVE-2020-5233)", `/\evil.com`, ""},
		{"double backslash", `\\evil.com`, ""},
		{"backslash-slash mix", `\/\/evil.com/`, ""},
		{"slash-backslash mix", `/\/evil.com/`, ""},
		{"tab between slashes (CVE-2020-11053)", "/\t/evil.com", ""},
		{"newline between slashes", "/\n/evil.com", ""},
		{"carriage return between slashes", "/\r/evil.com", ""},
		{"vertical tab between slashes", "/\v/evil.com", ""},
		{"tab before backslash", "/\t\\evil.com", ""},
		{"many tabs", "/\t\t/\t\\evil.com", ""},
		{"space between slashes", "/ /evil.com", ""},
		{"dot segment then backslash (CVE-2020-4037)", `/./\evil.com`, ""},
		{"dot-dot segments then backslash", `/./../../\evil.com`, ""},
		{"protocol-relative", "//evil.com", ""},
		{"protocol-relative to an allowed host", "//grafana.example.com/x", ""},
		{"triple slash", "///evil.com", ""},
		{"leading whitespace", " //evil.com", ""},
		{"NUL byte", "/\x00//evil.com", ""},
		{"no scheme", "grafana.example.com/x", ""},
		{"at-sign only", "@evil.com", ""},

		// Percent-encoding: a local path stays local however it is encoded.
		{"encoded slashes stay a local path", "/%2F%2Fevil.com", "/%2F%2Fevil.com"},
		{"double-encoded slashes stay a local path", "/%252F%252Fevil.com", "/%252F%252Fevil.com"},
		{"encoded tab stays a local path", "/%09/evil.com", "/%09/evil.com"},
		{"encoded backslash stays a local path", "/%5cevil.com", "/%5cevil.com"},
		{"encoded scheme", "%68%74%74%70%73%3a%2f%2fevil.com", ""},
		{"encoded dot in host", "https://grafana.example.com%2eevil.com/", ""},
		{"encoded slashes in host", "https://evil.com%2f%2f.grafana.example.com/", ""},
		{"encoded hash in host", "https://evil.com%23.grafana.example.com/", ""},
		{"encoded question mark in host", "https://evil.com%3F.grafana.example.com/", ""},
		{"encoded backslashes in host", "https://evil.com%5c%5c.grafana.example.com/", ""},
		{"encoded host", "https://%65vil.com/", ""},
		{"encoded at-sign in port", "https://grafana.example.com:443%40evil.com/", ""},

		// Userinfo and delimiters hiding the real host.
		{"allowed host as userinfo", "https://grafana.example.com@evil.com/", ""},
		{"allowed host and port as userinfo", "https://grafana.example.com:443@evil.com/", ""},
		{"userinfo on an allowed host", "https://user:pw@grafana.example.com/", ""},
		{"backslash before at-sign", `https://evil.com\@grafana.example.com`, ""},
		{"fragment before at-sign", "https://evil.com#@grafana.example.com/", ""},
		{"query before at-sign", "https://evil.com?@grafana.example.com/", ""},
		{"plus-ampersand userinfo", "https://grafana.example.com+&@evil.com#+@grafana.example.com/", ""},
		{"tab in host", "https://evil.com\tgrafana.example.com/", ""},
		{"allowed host only in the query", "https://evil.com/?rd=grafana.example.com", ""},
		{"empty authority", "https:///grafana.example.com/", ""},
		{"scheme without slashes", "https:grafana.example.com", ""},
		{"scheme with one slash", "https:/grafana.example.com", ""},
		{"scheme with slash-backslash", `https:/\grafana.example.com`, ""},
		{"backslash in the path of an allowed host", `https://grafana.example.com/\evil.com`, ""},
		{"backslash in the query stays, as browsers send it", `https://grafana.example.com/search?q=C:\dir&re=\d+`,
			`https://grafana.example.com/search?q=C:\dir&re=\d+`},
		{"backslash after a question mark in the authority", `https://grafana.example.com?\@evil.com/`, `https://grafana.example.com/?\@evil.com/`},
		{"backslash in the query of a foreign host", `https://evil.com?\@grafana.example.com/`, ""},
		{"backslash in the fragment before a question mark", `https://grafana.example.com/x#\?y`, ""},

		// Schemes.
		{"javascript", "javascript:alert(1)", ""},
		{"javascript mixed case", "JaVaScRiPt:alert(1)", ""},
		{"javascript with tab", "java\tscript:alert(1)", ""},
		{"javascript after slashes", "//javascript:alert(1)", ""},
		{"data", "data:text/html;base64,PHNjcmlwdD4=", ""},
		{"ftp to an allowed host", "ftp://grafana.example.com/", ""},
		{"http in production", "http://grafana.example.com/", ""},

		// Mixed case: names are case-insensitive; the result is canonical.
		{"mixed-case scheme and host", "HTTPS://GRAFANA.Example.COM/Dash?Q=1", "https://grafana.example.com/Dash?Q=1"},
		{"mixed-case foreign host", "hTtPs://EVIL.com/", ""},

		// IDN look-alikes and punycode.
		{"Cyrillic a in the allowed name", "https://grаfana.example.com/", ""},
		{"Cyrillic a in the domain", "https://grafana.exаmple.com/", ""},
		{"ideographic full stop", "https://grafana.example。com/", ""},
		{"fullwidth letters", "https://ｇrafana.example.com/", ""},
		{"division slash", "https://grafana.example.com∕evil.com", ""},
		{"listed punycode name", "https://xn--bcher-kva.example.com/", "https://xn--bcher-kva.example.com/"},
		{"its Unicode form is not accepted", "https://bücher.example.com/", ""},
		{"punycode look-alike of the domain", "https://grafana.xn--exmple-cua.com/", ""},
		{"punycode subdomain of an allowed suffix", "https://xn--80ak6aa92e.tools.example.com/", "https://xn--80ak6aa92e.tools.example.com/"},

		// Subdomain patterns (CVE-2021-21291 class).
		{"subdomain", "https://ci.tools.example.com/build/1", "https://ci.tools.example.com/build/1"},
		{"deeper subdomain", "https://a.b.tools.example.com/", "https://a.b.tools.example.com/"},
		{"the apex is not a subdomain", "https://tools.example.com/", ""},
		{"suffix without a dot", "https://eviltools.example.com/", ""},
		{"allowed name as a prefix", "https://tools.example.com.evil.com/", ""},
		{"allowed exact name as a prefix", "https://grafana.example.com.evil.com/", ""},
		{"exact name does not allow subdomains", "https://x.grafana.example.com/", ""},

		// Trailing dots and malformed names.
		{"trailing dot", "https://grafana.example.com./", ""},
		{"trailing dot on a subdomain", "https://ci.tools.example.com./", ""},
		{"empty label", "https://ci..tools.example.com/", ""},
		{"underscore", "https://c_i.tools.example.com/", ""},

		// Ports.
		{"default port is the same origin", "https://grafana.example.com:443/x", "https://grafana.example.com/x"},
		{"other port on a portless pattern", "https://grafana.example.com:8443/", ""},
		{"listed port", "https://app.example.com:8443/a?b=c", "https://app.example.com:8443/a?b=c"},
		{"listed host without its port", "https://app.example.com/", ""},
		{"leading-zero port", "https://app.example.com:08443/", ""},
		{"port out of range", "https://app.example.com:70000/", ""},

		// IP obfuscations (none listed).
		{"dword IP", "https://3627734734/", ""},
		{"hex IP", "https://0xd83ad6ce/", ""},
		{"octal IP", "https://0330.072.0326.0316/", ""},
		{"IPv6 literal", "https://[::ffff:216.58.214.206]/", ""},

		// Gatehouse's own origin, fragments, sizes.
		{"own origin", "https://login.example.com/profile", "https://login.example.com/profile"},
		{"own host over http", "http://login.example.com/profile", ""},
		{"fragment dropped", "https://grafana.example.com/d/abc#panel-2", "https://grafana.example.com/d/abc"},
		{"empty path becomes slash", "https://grafana.example.com", "https://grafana.example.com/"},
		{"path starting with two slashes stays on the host", "https://grafana.example.com//evil.com", "https://grafana.example.com//evil.com"},
		{"empty", "", ""},
		{"too long", "/" + strings.Repeat("a", MaxLength), ""},
	}
	for _, tc := range cases {
		t.Run(tc.class, func(t *testing.T) {
			t.Parallel()
			want := tc.want
			if want == "" {
				want = "/profile"
			}
			got, ok := p.Resolve(tc.in)
			if got != want || ok != (tc.want != "") {
				t.Fatalf("Resolve(%q) = %q, %v; want %q, %v", tc.in, got, ok, want, tc.want != "")
			}
		})
	}
}

func TestResolve_HTTPOnlyWhenTheCallbackIsHTTP(t *testing.T) {
	t.Parallel()
	dev := mustPolicy(t, "http://127.0.0.1:3000/auth/callback", "127.0.0.1:8080")
	wantResolved(t, dev, map[string]string{
		"http://127.0.0.1:8080/app?x=1":  "http://127.0.0.1:8080/app?x=1",
		"https://127.0.0.1:8080/app":     "https://127.0.0.1:8080/app",
		"http://127.0.0.1:3000/profile":  "http://127.0.0.1:3000/profile",
		"http://127.0.0.1:9999/":         "/profile",
		"http://localhost:8080/":         "/profile",
		"http://127.0.0.1:8080@evil.com": "/profile",
	})
	prod := mustPolicy(t, "https://login.example.com:8443/auth/callback", "")
	if got, ok := prod.Resolve("https://login.example.com:8443/x"); !ok || got != "https://login.example.com:8443/x" {
		t.Errorf("own origin with its port: %q, %v", got, ok)
	}
	if _, ok := prod.Resolve("https://login.example.com/x"); ok {
		t.Error("own host on another port must not count as the own origin")
	}
}

// TestResolve_EntryNamingTheDefaultPortMatchesTheURLWithOrWithoutIt: an
// ALLOWED_REDIRECT_HOSTS entry with :443 means the https default port,
// which URLs usually leave out; it was accepted at start and then matched
// nothing. Other ports stay exact.
func TestResolve_EntryNamingTheDefaultPortMatchesTheURLWithOrWithoutIt(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, "https://login.example.com/auth/callback", "app.example.com:443,.apps.example.com:443")
	wantResolved(t, p, map[string]string{
		"https://app.example.com/x":         "https://app.example.com/x",
		"https://app.example.com:443/x":     "https://app.example.com/x",
		"https://a.apps.example.com:443/y":  "https://a.apps.example.com/y",
		"https://app.example.com:8443/x":    "/profile",
		"http://app.example.com/x":          "/profile",
		"https://app.example.com.evil.io/x": "/profile",
	})
	if !p.HostAllowed("https", "app.example.com") || p.HostAllowed("https", "app.example.com:8443") {
		t.Error("HostAllowed disagrees with Resolve on the default port")
	}
}

// wantResolved: p resolves each URL to its target ("/profile": refused,
// the fallback).
func wantResolved(t *testing.T, p *Policy, cases map[string]string) {
	t.Helper()
	for in, want := range cases {
		if got, _ := p.Resolve(in); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseHosts_RejectsWhatCannotBeMatchedSafely(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"https://a.example.com", "a.example.com/path", "*.example.com", ".com", "a..example.com",
		"a.example.com.", "-a.example.com", "a-.example.com", "bücher.example.com", "a.example.com:0",
		"a.example.com:x", "user@a.example.com", `a\b.example.com`, "a.example.com:080",
	} {
		if _, err := ParseHosts(bad); err == nil {
			t.Errorf("ParseHosts(%q) accepted", bad)
		}
	}
	hs, err := ParseHosts(" A.Example.com,.b.example.com  c.example.com:8443\n")
	if err != nil || len(hs) != 3 {
		t.Fatalf("ParseHosts: %v, %v", hs, err)
	}
	if hs[0] != (HostPattern{Name: "a.example.com"}) || hs[1] != (HostPattern{Name: "b.example.com", Subdomains: true}) ||
		hs[2] != (HostPattern{Name: "c.example.com", Port: "8443"}) {
		t.Fatalf("ParseHosts = %+v", hs)
	}
	// Every bad entry is reported, not only the first.
	_, err = ParseHosts("*.a.com, https://b.com, ok.example.com")
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("want two problems, got %v", err)
	}
}

func TestNew_RefusesABadFallbackOrCallback(t *testing.T) {
	t.Parallel()
	if _, err := New("https://login.example.com/auth/callback", nil, "https://evil.com"); err == nil {
		t.Error("absolute fallback accepted")
	}
	if _, err := New("login.example.com/auth/callback", nil, "/profile"); err == nil {
		t.Error("callback without scheme accepted")
	}
}

func TestIsLocalPath(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"/": true, "/profile": true, "/profile?tab=claims": true, "/a/b#frag": true,
		"": false, "profile": false, "//evil.example": false, "/\\evil.example": false, "https://evil.example": false,
		"javascript:alert(1)": false, "/\t/evil": false, "/\n/evil": false, "\\\\evil": false, "/%0d%0aSet-Cookie:x": true, "/ /evil": false,
	} {
		if got := IsLocalPath(s); got != want {
			t.Errorf("IsLocalPath(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestHostAllowed_MatchesResolve(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, "https://login.example.com/auth/callback", prodHosts)
	cases := []struct {
		scheme, host string
		want         bool
	}{
		{"https", "login.example.com", true},
		{"https", "grafana.example.com", true},
		{"https", "a.tools.example.com", true},
		{"https", "tools.example.com", false}, // the apex of a subdomain entry
		{"https", "app.example.com:8443", true},
		{"https", "app.example.com", false}, // only that port
		{"https", "grafana.example.com:444", false},
		{"http", "grafana.example.com", false}, // https only
		{"https", "evil.com", false},
		{"https", "grafana.example.com.evil.com", false},
		{"https", "[::1]", false},
		{"https", "", false},
		{"ftp", "grafana.example.com", false},
	}
	for _, tc := range cases {
		if got := p.HostAllowed(tc.scheme, tc.host); got != tc.want {
			t.Errorf("HostAllowed(%s, %s) = %v, want %v", tc.scheme, tc.host, got, tc.want)
		}
		// The two entry points must agree.
		if _, ok := p.Resolve(tc.scheme + "://" + tc.host + "/x"); tc.host != "" && tc.host != "[::1]" && ok != tc.want {
			t.Errorf("Resolve(%s://%s/x) ok = %v, HostAllowed says %v", tc.scheme, tc.host, ok, tc.want)
		}
	}
	dev := mustPolicy(t, "http://login.gatehouse.test:3000/auth/callback", "app.gatehouse.test:8080")
	if !dev.HostAllowed("http", "app.gatehouse.test:8080") || !dev.HostAllowed("http", "login.gatehouse.test:3000") {
		t.Error("an http callback allows http hosts")
	}
}

// TestMatchHost_NamedHostsAreToldFromSubdomains: a host the configuration
// names (or Gatehouse's own) is Named even where a leading-dot entry
// matches it too; only a name no entry lists is a Subdomain.
func TestMatchHost_NamedHostsAreToldFromSubdomains(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, "https://login.example.com/auth/callback", ".example.com, grafana.example.com, app.example.com:8443")
	for _, tc := range []struct {
		scheme, host string
		want         Match
	}{
		{"https", "login.example.com", Named},   // Gatehouse's own, below .example.com too
		{"https", "grafana.example.com", Named}, // listed, below .example.com too
		{"https", "app.example.com:8443", Named},
		{"https", "made-up.example.com", Subdomain},
		{"https", "app.example.com", Subdomain}, // the listed name on another port
		{"https", "example.com", NoMatch},
		{"http", "grafana.example.com", NoMatch},
	} {
		if got := p.MatchHost(tc.scheme, tc.host); got != tc.want {
			t.Errorf("MatchHost(%s, %s) = %v, want %v", tc.scheme, tc.host, got, tc.want)
		}
	}
}
