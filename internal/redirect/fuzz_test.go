package redirect

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// browserResolve resolves a Location header the way a browser's URL parser
// would, as far as it differs from Go's: tabs and newlines are removed and
// backslashes count as slashes in http(s) URLs.
func browserResolve(base *url.URL, loc string) (*url.URL, error) {
	loc = strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(loc)
	loc = strings.TrimLeft(loc, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(ref), nil
}

// redirected sends target through http.Redirect, as the handlers do, and
// returns where a browser on base would go.
func redirected(t *testing.T, base *url.URL, target string) *url.URL {
	t.Helper()
	rec := httptest.NewRecorder()
	http.Redirect(rec, httptest.NewRequest(http.MethodGet, base.String(), nil), target, http.StatusSeeOther)
	loc := rec.Header().Get("Location")
	u, err := browserResolve(base, loc)
	if err != nil {
		t.Fatalf("target %q: the redirect Location %q does not parse: %v", target, loc, err)
	}
	return u
}

// FuzzIsLocalPath: whatever callbackUrl a request carries, a target that
// IsLocalPath accepts, sent through http.Redirect as the callback does,
// must bring the browser back to this site.
func FuzzIsLocalPath(f *testing.F) {
	for _, s := range []string{
		"/", "/profile", "/profile?tab=claims", "/admin#x", "//evil.example", "/\\evil.example", "\\\\evil.example",
		"https://evil.example/", "javascript:alert(1)", "/\t/evil.example", "/%2F%2Fevil.example", "/.//evil.example",
		"/a/..//evil.example", "/..//evil.example?x=//y", "/\x00//evil.example", "/@evil.example", "/:evil.example",
	} {
		f.Add(s)
	}
	base, _ := url.Parse("https://app.example/auth/callback?code=c&state=s")
	f.Fuzz(func(t *testing.T, target string) {
		if !IsLocalPath(target) {
			return
		}
		u := redirected(t, base, target)
		if u.Scheme != "https" || u.Host != "app.example" || u.User != nil {
			t.Fatalf("IsLocalPath(%q) but the redirect leads to %s", target, u.Redacted())
		}
	})
}

// FuzzResolve: whatever return URL an attacker puts into a sign-in link,
// the page the browser ends on after the redirect is on Gatehouse's own
// origin or on an allowed host, over https, without userinfo — checked by
// an oracle written independently of Policy.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"/profile", "https://grafana.example.com/d/1", "https://ci.tools.example.com/x", "https://app.example.com:8443/",
		"//evil.com", `/\evil.com`, "/\t/evil.com", "https://grafana.example.com@evil.com/", `https://evil.com\@grafana.example.com`,
		"https://evil.com#@grafana.example.com", "https://grafana.example.com%2eevil.com/", "https://grаfana.example.com/",
		"https://tools.example.com/", "https://eviltools.example.com/", "https://grafana.example.com./", "HTTPS://GRAFANA.EXAMPLE.COM",
		"https://grafana.example.com:8443/", "javascript:alert(1)", "http://grafana.example.com/", "https://[::1]/",
		"https://xn--bcher-kva.example.com/", "/%2F%2Fevil.com", "https:/\\evil.com", "https:evil.com", "https://login.example.com/",
		`https://grafana.example.com/?q=C:\dir`, `https://grafana.example.com?\@evil.com`, `https://evil.com?\@grafana.example.com`,
	} {
		f.Add(s)
	}
	p := mustPolicy(f, "https://login.example.com/auth/callback", prodHosts)
	base, _ := url.Parse("https://login.example.com/auth/callback?code=c&state=s")
	allowed := func(u *url.URL) bool {
		host, port := u.Hostname(), u.Port()
		if port == "443" {
			port = ""
		}
		switch {
		case host == "login.example.com" || host == "grafana.example.com" || host == "xn--bcher-kva.example.com":
			return port == ""
		case host == "app.example.com":
			return port == "8443"
		case strings.HasSuffix(host, ".tools.example.com"):
			label := strings.TrimSuffix(host, ".tools.example.com")
			return port == "" && label != "" && !strings.HasSuffix(label, ".") && !strings.HasPrefix(label, ".")
		}
		return false
	}
	f.Fuzz(func(t *testing.T, in string) {
		target, ok := p.Resolve(in)
		if !ok {
			if target != p.Fallback() {
				t.Fatalf("Resolve(%q) refused but returned %q, not the fallback", in, target)
			}
			return
		}
		u := redirected(t, base, target)
		if u.Scheme != "https" || u.User != nil || !allowed(u) {
			t.Fatalf("Resolve(%q) = %q: the browser ends on %s", in, target, u.Redacted())
		}
		beforeQuery, _, _ := strings.Cut(target, "?")
		if strings.ContainsAny(target, "\t\r\n ") || strings.Contains(beforeQuery, `\`) {
			t.Fatalf("Resolve(%q) = %q carries whitespace, or a backslash before the query", in, target)
		}
		// Canonical: resolving the result again changes nothing.
		if again, ok := p.Resolve(target); !ok || again != target {
			t.Fatalf("Resolve(%q) = %q, but Resolve(%q) = %q, %v", in, target, target, again, ok)
		}
	})
}
