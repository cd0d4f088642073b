package forward

import (
	"net/http"
	"strings"
)

// IsNavigation reports whether the original request is a browser loading
// a page (answered with a redirect to sign in) rather than a script or an
// API client (answered 401, so a single-page app can handle it): a GET or
// HEAD that the browser marks as a navigation (Sec-Fetch-Mode: navigate),
// or, from browsers that send no Sec-Fetch-Mode, that accepts text/html.
// A Sec-Fetch-Mode other than navigate (cors, no-cors, same-origin,
// websocket) and X-Requested-With: XMLHttpRequest mean a script, whatever
// Accept says. h must be the original request's headers (every proxy
// forwards them to the auth request; Envoy only those in allowed_headers,
// so list sec-fetch-mode, accept and x-requested-with there).
func IsNavigation(method string, h http.Header) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	if v := h["X-Requested-With"]; len(v) > 0 && strings.EqualFold(v[0], "XMLHttpRequest") {
		return false
	}
	if v := h["Sec-Fetch-Mode"]; len(v) > 0 {
		return v[0] == "navigate"
	}
	for _, a := range h["Accept"] {
		if acceptsHTML(a) {
			return true
		}
	}
	return false
}

// acceptsHTML: text/html (or application/xhtml+xml) is in the list with a
// non-zero quality.
func acceptsHTML(accept string) bool {
	for rest := accept; rest != ""; {
		item, tail, _ := cut(rest, ',')
		rest = tail
		mt, params, _ := cut(item, ';')
		mt = strings.TrimSpace(mt)
		if !strings.EqualFold(mt, "text/html") && !strings.EqualFold(mt, "application/xhtml+xml") {
			continue
		}
		if q, ok := quality(params); ok && q {
			return true
		}
	}
	return false
}

// quality reports (q > 0, well-formed) for media-type parameters; no q
// means 1.
func quality(params string) (nonZero, ok bool) {
	for rest := params; rest != ""; {
		p, tail, _ := cut(rest, ';')
		rest = tail
		k, v, found := strings.Cut(strings.TrimSpace(p), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" {
			return false, false
		}
		return strings.Trim(v, "0.") != "", true
	}
	return true, true
}
