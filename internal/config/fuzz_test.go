package config_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
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
		if !config.IsLocalPath(target) {
			return
		}
		rec := httptest.NewRecorder()
		http.Redirect(rec, httptest.NewRequest(http.MethodGet, base.String(), nil), target, http.StatusSeeOther)
		loc := rec.Header().Get("Location")
		u, err := browserResolve(base, loc)
		if err != nil {
			t.Fatalf("IsLocalPath(%q) but the redirect Location %q does not parse: %v", target, loc, err)
		}
		if u.Scheme != "https" || u.Host != "app.example" || u.User != nil {
			t.Fatalf("IsLocalPath(%q) but the redirect %q leads to %s", target, loc, u.Redacted())
		}
	})
}
