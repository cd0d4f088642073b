package session

import (
	"net/http"
	"net/textproto"
	"strings"
)

// cookieValue is r.Cookie(name).Value for the cookie store, where known(v)
// vouches for a value without net/http's byte-by-byte check (a value the
// store opened before was valid then) and nothing is allocated. Needed for the session-check budget: BenchmarkSessionCheck (internal/auth).
//
// Like net/http, it returns the first cookie of that name with a valid
// value, quotes removed; a known value is a valid one, so which cookie is
// found does not change. (net/http also ignores all cookies of a request
// with more than 3000; that limit bounds its allocations, and this makes
// none.)
func cookieValue(r *http.Request, name string, known func(string) bool) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			k, v, _ := strings.Cut(part, "=")
			if textproto.TrimString(k) != name {
				continue
			}
			v = unquote(v) // once: net/http refuses ""value""
			if known(v) || validCookieBytes(v) {
				return v, true
			}
		}
	}
	return "", false
}

// unquote removes one pair of surrounding double quotes.
func unquote(v string) string {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// validCookieBytes follows net/http's parseCookieValue: printable ASCII
// other than '"', ';' and '\' (after unquote).
func validCookieBytes(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
